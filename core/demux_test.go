package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

// A Demux routes each packet to its session by hint alone: genuine packets
// of 50 sessions, in any order, reach their session; duplicates come back
// as ErrReplay with their session; forged and foreign packets reach none.
func TestDemux(t *testing.T) {
	d := core.NewDemux()
	a, b := mustIdentity(t), mustIdentity(t)
	type pair struct{ tx, rx *core.Session }
	var pairs []pair
	for range 50 {
		is, rs := handshake(t, a, b, keystore.X25519, nil)
		d.Add(rs)
		pairs = append(pairs, pair{is, rs})
	}
	type sent struct {
		p   []byte
		to  *core.Session
		msg string
	}
	var all []sent
	for i, p := range pairs {
		for j := range 10 {
			msg := fmt.Sprintf("s%d m%d", i, j)
			ct, _ := p.tx.Encrypt([]byte(msg))
			all = append(all, sent{ct, p.rx, msg})
		}
	}
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, s := range all {
		o, err := d.Open(s.p)
		if err != nil || o.Session != s.to || string(o.Plaintext) != s.msg {
			t.Fatalf("%s: %v", s.msg, err)
		}
	}
	if o, err := d.Open(all[0].p); !errors.Is(err, core.ErrReplay) || o.Session != all[0].to {
		t.Fatalf("duplicate: %v", err)
	}
	for range 1000 {
		forged := bytes.Clone(all[rand.IntN(len(all))].p)
		forged[1+rand.IntN(4)] ^= byte(1 + rand.IntN(255)) // another hint
		if o, err := d.Open(forged); o.Session != nil || err == nil {
			t.Fatal("forged hint reached a session")
		}
	}
	other, _ := handshake(t, a, b, keystore.X25519, nil)
	foreign, _ := other.Encrypt([]byte("not for this demux"))
	if o, err := d.Open(foreign); o.Session != nil || !errors.Is(err, core.ErrTooOld) {
		t.Fatalf("foreign packet: %v", err)
	}
	// Each session indexes its lookahead and its recent hints, no more.
	if n := d.Len(); n > 50*(32+32) {
		t.Fatalf("%d hints indexed for 50 idle sessions", n)
	}
	for _, p := range pairs {
		p.rx.Close()
	}
	if d.Len() != 0 {
		t.Fatalf("%d hints left after every session closed", d.Len())
	}
}

// A message 2 without the genuine hint is refused before any DH.
func TestResponseHint(t *testing.T) {
	a, b := newP256Identity(), mustIdentity(t)
	in, m1, _ := core.Initiate(a, dhPub(t, b, keystore.P256), nil, nil)
	_, _, m2, err := core.NewResponder(b, nil).Respond(m1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := core.Hint(m2); !ok || h != in.ResponseHint() {
		t.Fatal("message 2 does not carry the initiator's hint")
	}
	ops := a.PrivateKeyOps()
	for i := range 1000 {
		bad := bytes.Clone(m2)
		bad[1+i%4] ^= byte(1 + i%255)
		if _, _, err := in.Finish(bad); !errors.Is(err, core.ErrAuth) {
			t.Fatalf("wrong hint: %v", err)
		}
	}
	if a.PrivateKeyOps() != ops {
		t.Fatalf("forged hints cost %d identity operations", a.PrivateKeyOps()-ops)
	}
	if s, _, err := in.Finish(m2); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
}
