//go:build js && wasm

package webcrypto

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/messenger"
)

// These run under node (make wasmtest) and in Chromium (make webtest): both
// have WebCrypto with Ed25519 and X25519.

func generate(t *testing.T, suites ...keystore.Suite) *Identity {
	t.Helper()
	id, err := Generate(suites...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	return id
}

func TestHostHasCurve25519(t *testing.T) {
	if !HasCurve25519() {
		t.Fatal("this host's WebCrypto lacks Ed25519 or X25519; the tests expect node 20 or Chromium 137+")
	}
}

// A default identity signs with Ed25519 and holds X25519 and P-256 DH keys;
// a P-256 identity signs with ECDSA and holds two P-256 keys. Both make
// cards that verify, and an ECDSA identity refuses to sign a digest.
func TestCards(t *testing.T) {
	for _, c := range []struct {
		suites []keystore.Suite
		alg    int
		want   []keystore.Suite
	}{
		{nil, core.SigEd25519, []keystore.Suite{keystore.X25519, keystore.P256}},
		{[]keystore.Suite{keystore.X25519}, core.SigEd25519, []keystore.Suite{keystore.X25519}},
		{[]keystore.Suite{keystore.P256}, core.SigECDSAP256, []keystore.Suite{keystore.P256}},
	} {
		id := generate(t, c.suites...)
		if got := id.Suites(); !equalSuites(got, c.want) {
			t.Fatalf("suites %v, want %v", got, c.want)
		}
		b, err := core.NewCard(id, "browser")
		if err != nil {
			t.Fatal(err)
		}
		card, err := core.ParseCard(b)
		if err != nil {
			t.Fatal(err)
		}
		if card.SigningKey().Alg() != c.alg {
			t.Fatalf("card signed with %d, want %d", card.SigningKey().Alg(), c.alg)
		}
		for _, s := range c.want {
			k, _ := card.DHKey(s)
			mine, _ := id.DHPublic(s)
			if !k.Equal(mine) {
				t.Fatalf("card's %v key differs", s)
			}
		}
		sig, err := core.SignMessage(id, []byte("the plan"))
		if err != nil || card.SigningKey().VerifyMessage([]byte("the plan"), sig) != nil {
			t.Fatalf("signed message: %v", err)
		}
		d := sha256.Sum256([]byte("x"))
		_, err = id.Sign(rand.Reader, d[:], crypto.SHA256)
		if c.alg == core.SigECDSAP256 && !errors.Is(err, ErrDigest) {
			t.Fatalf("ECDSA signed a digest: %v", err)
		}
	}
}

func equalSuites(a, b []keystore.Suite) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// WebCrypto's DH with the held key gives what Go's crypto/ecdh computes from
// the other side; a flipped byte of the peer key changes it or is refused.
func TestDHAgainstCryptoECDH(t *testing.T) {
	id := generate(t)
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		curve := ecdh.X25519()
		if s == keystore.P256 {
			curve = ecdh.P256()
		}
		peer, _ := curve.GenerateKey(rand.Reader)
		pk, err := keystore.FromECDH(peer.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		var out [32]byte
		if err := id.DH(pk, &out); err != nil {
			t.Fatal(err)
		}
		mine, _ := id.DHPublic(s)
		me, _ := mine.ECDH()
		want, _ := peer.ECDH(me)
		if !bytes.Equal(out[:], want[:32]) {
			t.Fatalf("%v: WebCrypto and crypto/ecdh disagree", s)
		}
	}
}

// Keys WebCrypto refuses are ErrInvalidPublicKey: X25519's u = 0 and u = 1
// (low order: an all-zero result), and nothing else leaks out.
func TestInvalidPeers(t *testing.T) {
	id := generate(t)
	for _, u := range []byte{0, 1} {
		k, err := keystore.ParsePublicKey(keystore.X25519, append([]byte{u}, make([]byte, 31)...))
		if err != nil {
			t.Fatal(err)
		}
		var out [32]byte
		if err := id.DH(k, &out); !errors.Is(err, keystore.ErrInvalidPublicKey) {
			t.Fatalf("u=%d: %v", u, err)
		}
	}
	p := generate(t, keystore.P256)
	x, _ := keystore.ParsePublicKey(keystore.X25519, make([]byte, 32))
	var out [32]byte
	if err := p.DH(x, &out); !errors.Is(err, keystore.ErrUnsupportedSuite) {
		t.Fatalf("X25519 peer of a P-256 identity: %v", err)
	}
}

// The core's handshake with a WebCrypto identity on either side of a
// memory identity, in both suites: two identity operations per side, and
// transport messages both ways.
func TestHandshakeWithMemoryIdentity(t *testing.T) {
	w := generate(t)
	m, err := memory.Generate()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		for _, wInit := range []bool{true, false} {
			a, b := keystore.Identity(w), keystore.Identity(m)
			if !wInit {
				a, b = b, a
			}
			before := w.PrivateKeyOps()
			peer, _ := b.DHPublic(s)
			in, m1, err := core.Initiate(a, peer, []byte("hello"), nil)
			if err != nil {
				t.Fatal(err)
			}
			rs, p1, m2, err := core.NewResponder(b, nil).Respond(m1, []byte("welcome"))
			if err != nil {
				t.Fatalf("%v, webcrypto initiates %v: %v", s, wInit, err)
			}
			is, p2, err := in.Finish(m2)
			if err != nil || string(p1) != "hello" || string(p2) != "welcome" {
				t.Fatalf("%v: %v %q %q", s, err, p1, p2)
			}
			if n := w.PrivateKeyOps() - before; n != 2 {
				t.Fatalf("%d WebCrypto operations per handshake, want 2", n)
			}
			ct, _ := is.Encrypt([]byte("ping"))
			if pt, err := rs.Decrypt(ct); err != nil || string(pt) != "ping" {
				t.Fatal(err)
			}
			ct, _ = rs.Encrypt([]byte("pong"))
			if pt, err := is.Decrypt(ct); err != nil || string(pt) != "pong" {
				t.Fatal(err)
			}
			is.Close()
			rs.Close()
		}
	}
}

func TestClosed(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := id.DHPublic(keystore.X25519)
	id.Close()
	var out [32]byte
	if err := id.DH(pk, &out); !errors.Is(err, keystore.ErrClosed) {
		t.Fatalf("DH after Close: %v", err)
	}
	if _, err := id.Sign(rand.Reader, []byte("m"), crypto.Hash(0)); !errors.Is(err, keystore.ErrClosed) {
		t.Fatalf("Sign after Close: %v", err)
	}
}

// Two messenger engines, one on a WebCrypto identity and one on a memory
// identity, over a lossless link: messages both ways reach Delivered.
func TestEngineWithMemoryNode(t *testing.T) {
	w := generate(t)
	m, _ := memory.Generate()
	defer m.Close()
	now := time.Unix(1_800_000_000, 0)
	wc, _ := core.NewCard(w, "browser")
	mc, _ := core.NewCard(m, "daemon")
	ew, err := messenger.New(w, messenger.Config{}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	em, _ := messenger.New(m, messenger.Config{}, nil, now)
	defer ew.Close()
	defer em.Close()
	for _, x := range []struct {
		e    *messenger.Engine
		peer string
		card []byte
	}{{ew, "daemon", mc}, {em, "browser", wc}} {
		x.e.AddLink("bridge", messenger.Stream)
		if _, err := x.e.AddContact(x.peer, x.card, false); err != nil {
			t.Fatal(err)
		}
		x.e.SetContactAddrs(x.peer, messenger.Addr{Link: "bridge"})
	}
	id1, _ := ew.Send(now, "daemon", []byte("from the browser"))
	id2, _ := em.Send(now, "browser", []byte("from the daemon"))
	got := map[string]string{}
	delivered := map[*messenger.Engine]messenger.MsgID{}
	for step := 0; step < 200 && (len(got) < 2 || len(delivered) < 2); step++ {
		now = now.Add(50 * time.Millisecond)
		for _, pair := range [][2]*messenger.Engine{{ew, em}, {em, ew}} {
			from, to := pair[0], pair[1]
			from.Tick(now)
			pkts, evs := from.Poll()
			for _, ev := range evs {
				switch {
				case ev.Kind == messenger.EventMessage:
					got[ev.Contact] = string(ev.Text)
				case ev.Kind == messenger.EventDelivery && ev.State == messenger.Delivered:
					delivered[from] = ev.ID
				}
			}
			for _, p := range pkts {
				to.Receive(now, messenger.Addr{Link: "bridge"}, p.Data)
			}
		}
	}
	if got["daemon"] != "from the daemon" || got["browser"] != "from the browser" {
		t.Fatalf("received %q", got)
	}
	if delivered[ew] != id1 || delivered[em] != id2 {
		t.Fatalf("delivered %v, sent %d and %d", delivered, id1, id2)
	}
}
