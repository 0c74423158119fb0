package pkcs11

import (
	"bytes"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// A token identity talks to a memory identity in both roles and both suites;
// a handshake costs the token exactly 2 DH operations, a transport message 0.
func TestHandshakeWithMemoryIdentity(t *testing.T) {
	ks := openKS(t, tokA)
	tok := newIdentity(t, ks, "handshaker")
	mem, err := memory.Generate()
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()

	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		for _, tokenInitiates := range []bool{true, false} {
			var a, b keystore.Identity = tok, mem
			if !tokenInitiates {
				a, b = mem, tok
			}
			before := tok.PrivateKeyOps()
			rs, _ := b.DHPublic(s)
			in, m1, err := core.Initiate(a, rs, []byte("hello"), nil)
			if err != nil {
				t.Fatalf("%v: initiate: %v", s, err)
			}
			rsess, p1, m2, err := core.NewResponder(b, nil).Respond(m1, []byte("welcome"))
			if err != nil {
				t.Fatalf("%v: respond: %v", s, err)
			}
			isess, p2, err := in.Finish(m2)
			if err != nil {
				t.Fatalf("%v: finish: %v", s, err)
			}
			if string(p1) != "hello" || string(p2) != "welcome" || isess.HandshakeHash() != rsess.HandshakeHash() {
				t.Fatalf("%v: sessions disagree", s)
			}
			if got := tok.PrivateKeyOps() - before; got != 2 {
				t.Fatalf("%v, token initiates %v: handshake cost %d token operations, want 2", s, tokenInitiates, got)
			}
			for i := range 5 {
				msg := []byte{byte(i), 'x'}
				c, err := isess.Encrypt(msg)
				if err != nil {
					t.Fatal(err)
				}
				p, err := rsess.Decrypt(c)
				if err != nil || !bytes.Equal(p, msg) {
					t.Fatalf("%v: transport: %v", s, err)
				}
				if c, err = rsess.Encrypt(msg); err != nil {
					t.Fatal(err)
				}
				if p, err = isess.Decrypt(c); err != nil || !bytes.Equal(p, msg) {
					t.Fatalf("%v: transport back: %v", s, err)
				}
			}
			if got := tok.PrivateKeyOps() - before; got != 2 {
				t.Fatalf("%v: transport messages cost token operations (%d in all)", s, got)
			}
			isess.Close()
			rsess.Close()
		}
	}
}
