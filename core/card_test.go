package core_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"errors"
	"regexp"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

func TestCards(t *testing.T) {
	mem, hw := mustIdentity(t), newP256Identity()
	cm, err := core.NewCard(mem, "Alice")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := core.NewCard(hw, "Bob's TPM")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("card sizes: memory %d bytes, hardware %d bytes", len(cm), len(ch))
	a, err := core.ParseCard(cm)
	if err != nil {
		t.Fatal(err)
	}
	b, err := core.ParseCard(ch)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "Alice" || a.SigningKey().Alg() != core.SigEd25519 || !bytes.Equal(a.SigningKey().Public().(ed25519.PublicKey), mem.PublicBytes()) {
		t.Fatal("memory card fields")
	}
	if !b.SigningKey().Public().(*ecdsa.PublicKey).Equal(hw.Public()) {
		t.Fatal("hardware card signing key")
	}
	if k, ok := a.DHKey(keystore.X25519); !ok || !k.Equal(mem.DeriveX25519()) {
		t.Fatal("memory card X25519 key")
	}
	if s, err := core.ChooseSuite(a, b); err != nil || s != keystore.P256 {
		t.Fatalf("mixed pair suite %v %v", s, err)
	}
	if s, _ := core.ChooseSuite(a, a); s != keystore.X25519 {
		t.Fatal("two memory nodes must use 25519")
	}
	if !regexp.MustCompile(`^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$`).MatchString(a.Fingerprint()) || a.Fingerprint() == b.Fingerprint() {
		t.Fatalf("fingerprints %q %q", a.Fingerprint(), b.Fingerprint())
	}
	for _, c := range [][]byte{cm, ch} {
		for i := range c {
			bad := bytes.Clone(c)
			bad[i] ^= 0x01
			if _, err := core.ParseCard(bad); !errors.Is(err, core.ErrBadCard) {
				t.Fatalf("flipped byte %d accepted: %v", i, err)
			}
		}
		if _, err := core.ParseCard(append(bytes.Clone(c), 0)); err == nil {
			t.Fatal("trailing byte accepted")
		}
	}
	for _, name := range []string{"", "bell\a", string(make([]byte, 65)), "\xff", "bob\u202egpj", "a\u200db"} {
		if _, err := core.NewCard(mem, name); !errors.Is(err, core.ErrBadName) {
			t.Fatalf("name %q: %v", name, err)
		}
	}
}
