package tpm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/softhsm"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/keystore/pkcs11"
)

// handshake runs Noise_IK_P256 between tpmID and other in both roles: each
// handshake costs every hardware side exactly 2 private-key operations, and
// transport messages cost none.
func handshake(t *testing.T, tpmID *Identity, other keystore.Identity) {
	t.Helper()
	hw := []keystore.OpCounter{tpmID}
	if oc, ok := other.(keystore.OpCounter); ok {
		hw = append(hw, oc)
	}
	ops := func() []uint64 {
		var n []uint64
		for _, c := range hw {
			n = append(n, c.PrivateKeyOps())
		}
		return n
	}
	check := func(before []uint64, what string) {
		t.Helper()
		for i, n := range ops() {
			if got := n - before[i]; got != 2 {
				t.Fatalf("%s: side %d spent %d private-key operations, want 2", what, i, got)
			}
		}
	}
	for _, tpmInitiates := range []bool{true, false} {
		var a, b keystore.Identity = tpmID, other
		if !tpmInitiates {
			a, b = other, tpmID
		}
		before := ops()
		rs, err := b.DHPublic(keystore.P256)
		if err != nil {
			t.Fatal(err)
		}
		in, m1, err := core.Initiate(a, rs, []byte("hello"), nil)
		if err != nil {
			t.Fatalf("initiate: %v", err)
		}
		rsess, p1, m2, err := core.NewResponder(b, nil).Respond(m1, []byte("welcome"))
		if err != nil {
			t.Fatalf("respond: %v", err)
		}
		isess, p2, err := in.Finish(m2)
		if err != nil {
			t.Fatalf("finish: %v", err)
		}
		if string(p1) != "hello" || string(p2) != "welcome" || isess.HandshakeHash() != rsess.HandshakeHash() {
			t.Fatal("sessions disagree")
		}
		check(before, "handshake")
		for i := range 3 {
			msg := []byte{byte(i), 'x'}
			c, err := isess.Encrypt(msg)
			if err != nil {
				t.Fatal(err)
			}
			if p, err := rsess.Decrypt(c); err != nil || !bytes.Equal(p, msg) {
				t.Fatalf("transport: %v", err)
			}
		}
		check(before, "handshake and transport")
		isess.Close()
		rsess.Close()
	}
}

func TestHandshakeWithMemoryIdentity(t *testing.T) {
	ks := simKeystore(t, "1234")
	mem, err := memory.Generate()
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	handshake(t, generate(t, ks, "hs"), mem)
}

// One SoftHSM token for the package: SOFTHSM2_CONF is read once per process.
var hsm struct {
	once sync.Once
	env  *softhsm.Env
	ks   *pkcs11.Keystore
	err  error
	n    int
}

// softhsmPeer generates a fresh P-256 identity on the package's token.
func softhsmPeer(t *testing.T) keystore.Identity {
	hsm.once.Do(func() {
		if hsm.env, hsm.err = softhsm.New(); hsm.err != nil {
			return
		}
		p := make([]byte, 8)
		rand.Read(p)
		tok, err := hsm.env.InitToken("loramesh-tpm", hex.EncodeToString(p))
		if err != nil {
			hsm.err = err
			return
		}
		hsm.ks, hsm.err = pkcs11.OpenURI(tok.URI(), tok.PIN)
	})
	if hsm.err != nil {
		t.Fatal(hsm.err)
	}
	hsm.n++
	peer, err := hsm.ks.Generate(fmt.Sprintf("peer%d", hsm.n), keystore.P256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return peer
}

func closeSoftHSM() {
	if hsm.ks != nil {
		hsm.ks.Close()
	}
	if hsm.env != nil {
		hsm.env.Cleanup()
	}
}

func TestHandshakeWithSoftHSMIdentity(t *testing.T) {
	ks := simKeystore(t, "1234")
	handshake(t, generate(t, ks, "hs"), softhsmPeer(t))
}
