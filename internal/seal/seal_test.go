package seal_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/loramesh/loramesh-core/internal/seal"
	"github.com/loramesh/loramesh-core/internal/softhsm"
	"github.com/loramesh/loramesh-core/internal/tpmsim"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/keystore/pkcs11"
	"github.com/loramesh/loramesh-core/keystore/tpm"
)

// keyExchanger lets crypto/hpke (the oracle: an RFC 9180 implementation we
// did not write) use an identity's DH, wherever the key is held.
type keyExchanger struct {
	id keystore.Identity
	s  keystore.Suite
}

func (k keyExchanger) PublicKey() *ecdh.PublicKey {
	p, _ := k.id.DHPublic(k.s)
	e, _ := p.ECDH()
	return e
}

func (k keyExchanger) Curve() ecdh.Curve { return k.PublicKey().Curve() }

func (k keyExchanger) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	p, err := keystore.FromECDH(peer)
	if err != nil {
		return nil, err
	}
	var out [32]byte
	err = k.id.DH(p, &out)
	return out[:], err
}

const purpose = "state"

var info = []byte("loramesh sealed v1 " + purpose)

// identities are one identity per keystore, and a second memory identity.
func identities(t *testing.T) map[string]keystore.Identity {
	t.Helper()
	ids := map[string]keystore.Identity{}
	for _, n := range []string{"memory", "memory-2"} {
		id, err := memory.Generate()
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = id
	}
	env, err := softhsm.New()
	if err != nil {
		t.Fatalf("SoftHSM2 (make deps installs it): %v", err)
	}
	t.Cleanup(func() { env.Cleanup() })
	tok, err := env.InitToken("seal", "1234")
	if err != nil {
		t.Fatal(err)
	}
	pks, err := pkcs11.Open(pkcs11.Config{ModulePath: tok.Module, Token: tok.Label}, tok.PIN)
	if err != nil {
		t.Fatal(err)
	}
	if ids["softhsm"], err = pks.Generate("seal", keystore.P256); err != nil {
		t.Fatal(err)
	}
	tp, err := tpmsim.Open()
	if err != nil {
		t.Fatal(err)
	}
	tks, err := tpm.OpenTransport(tp, tpm.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if ids["tpm"], err = tks.Generate("seal", keystore.P256); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, id := range ids {
			id.Close()
		}
		pks.Close()
		tks.Close()
	})
	return ids
}

// Per keystore: what Seal makes, crypto/hpke opens with the identity's DH
// (so the format is RFC 9180 with our header as aad); what crypto/hpke seals
// to the identity, Open opens; a file sealed to one identity opens with no
// other, and its plaintext appears nowhere in it.
func TestSealPerKeystore(t *testing.T) {
	ids := identities(t)
	text := []byte("meet at the north gate at 06:00, bring the spare antenna")
	for name, id := range ids {
		t.Run(name, func(t *testing.T) {
			s := seal.Suite(id)
			pub, err := id.DHPublic(s)
			if err != nil {
				t.Fatal(err)
			}
			b, err := seal.Seal(pub, purpose, text)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, text[:16]) {
				t.Fatal("plaintext in the sealed file")
			}
			got, err := seal.Open(id, purpose, b)
			if err != nil || !bytes.Equal(got, text) {
				t.Fatalf("open: %v", err)
			}

			// The oracle opens ours.
			k, err := hpke.NewDHKEMPrivateKey(keyExchanger{id, s})
			if err != nil {
				t.Fatal(err)
			}
			hl := 6 + map[keystore.Suite]int{keystore.X25519: 32, keystore.P256: 65}[s]
			r, err := hpke.NewRecipient(b[6:hl], k, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := r.Open(b[:hl], b[hl:]); err != nil || !bytes.Equal(got, text) {
				t.Fatalf("crypto/hpke cannot open our file: %v", err)
			}
			if kem := binary.BigEndian.Uint16(b[4:]); kem != k.KEM().ID() {
				t.Fatalf("KEM id %#x, crypto/hpke says %#x", kem, k.KEM().ID())
			}

			// We open the oracle's.
			hp, err := k.KEM().NewPublicKey(k.PublicKey().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			enc, snd, err := hpke.NewSender(hp, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info)
			if err != nil {
				t.Fatal(err)
			}
			header := binary.BigEndian.AppendUint16(append(seal.Magic[:], []byte(nil)...), k.KEM().ID())
			header = append(header, enc...)
			ct, err := snd.Seal(header, text)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := seal.Open(id, purpose, append(header, ct...)); err != nil || !bytes.Equal(got, text) {
				t.Fatalf("cannot open crypto/hpke's file: %v", err)
			}

			// Nobody else opens it, nor does another purpose.
			for other, o := range ids {
				if other == name {
					continue
				}
				if _, err := seal.Open(o, purpose, b); !errors.Is(err, seal.ErrOpen) {
					t.Errorf("%s opened a file sealed to %s: %v", other, name, err)
				}
			}
			if _, err := seal.Open(id, "history", b); !errors.Is(err, seal.ErrOpen) {
				t.Errorf("opened with another purpose: %v", err)
			}
		})
	}
}

// Damage anywhere is refused, as ErrFormat (header) or ErrOpen, never a
// panic or a wrong plaintext; so are truncations.
func TestSealDamage(t *testing.T) {
	id, err := memory.Generate()
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		pub, _ := id.DHPublic(s)
		b, err := seal.Seal(pub, purpose, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			for _, bit := range []byte{1, 0x80} {
				bad := bytes.Clone(b)
				bad[i] ^= bit
				if _, err := seal.Open(id, purpose, bad); err == nil {
					t.Fatalf("%v: flipped bit in byte %d accepted", s, i)
				}
			}
		}
		for n := range len(b) {
			if _, err := seal.Open(id, purpose, b[:n]); err == nil {
				t.Fatalf("%v: truncated to %d bytes accepted", s, n)
			}
		}
	}
	if _, err := seal.Open(id, purpose, []byte{0xa4, 1, 2}); !errors.Is(err, seal.ErrNotSealed) {
		t.Fatalf("plain CBOR: %v", err)
	}
}

// Two seals of the same plaintext differ (fresh ephemeral keys): a file
// tells nothing about whether its content changed.
func TestSealFresh(t *testing.T) {
	id, _ := memory.Generate()
	defer id.Close()
	pub, _ := id.DHPublic(keystore.X25519)
	a, _ := seal.Seal(pub, purpose, []byte("same"))
	b, _ := seal.Seal(pub, purpose, []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals are equal")
	}
}

func FuzzOpen(f *testing.F) {
	id, err := memory.FromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		pub, _ := id.DHPublic(s)
		b, _ := seal.Seal(pub, purpose, []byte("seed"))
		f.Add(b)
	}
	f.Add(append(seal.Magic[:], 0, 0x20))
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := seal.Open(id, purpose, b)
		if err == nil && !bytes.Equal(pt, []byte("seed")) {
			t.Fatalf("opened to %q", pt)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	id, _ := memory.Generate()
	defer id.Close()
	pt := make([]byte, 4096)
	rand.Read(pt)
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		pub, _ := id.DHPublic(s)
		b.Run(fmt.Sprint(s), func(b *testing.B) {
			for b.Loop() {
				seal.Seal(pub, purpose, pt)
			}
		})
	}
}
