package webcrypto

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

// validRecord is a record of real public keys, made with the standard
// library (the record format is portable: this runs natively and fuzzes).
func validRecord(t testing.TB, prf bool) *record {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	p, _ := ecdh.P256().GenerateKey(rand.Reader)
	xk, err := keystore.FromECDH(x.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := keystore.FromECDH(p.PublicKey())
	r := &record{Version: 1, Name: "me", SigAlg: core.SigEd25519, SignPub: pub,
		DH: map[uint8][]byte{1: xk.Bytes(), 2: pk.Bytes()}, Protect: ProtectNone}
	if prf {
		r.Protect, r.Cred, r.Salt = ProtectPRF, bytes.Repeat([]byte{7}, 64), make([]byte, saltSize)
		r.Wrapped = map[uint8][]byte{0: make([]byte, 80), 1: make([]byte, 80), 2: make([]byte, 160)}
	}
	return r
}

func TestRecordRoundTrip(t *testing.T) {
	for _, prf := range []bool{false, true} {
		r := validRecord(t, prf)
		got, err := parseRecord(r.encode())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.encode(), r.encode()) || len(got.suites()) != 2 || got.suites()[0] != keystore.X25519 {
			t.Fatal("record changed in a round trip")
		}
	}
}

// Every rule of the record has a case that breaks it, and each is refused
// with ErrRecord (which is a keystore.ErrKeystore).
func TestRecordRules(t *testing.T) {
	for name, spoil := range map[string]func(r *record){
		"version":              func(r *record) { r.Version = 2 },
		"name":                 func(r *record) { r.Name = "../x" },
		"alg mismatch":         func(r *record) { r.SigAlg = core.SigECDSAP256 },
		"signing key":          func(r *record) { r.SignPub = r.SignPub[:31] },
		"no DH":                func(r *record) { r.DH = map[uint8][]byte{} },
		"DH suite":             func(r *record) { r.DH[3] = r.DH[1] },
		"DH key":               func(r *record) { r.DH[1] = bytes.Repeat([]byte{0xff}, 32) },
		"protection":           func(r *record) { r.Protect = 3 },
		"wrapping on plain":    func(r *record) { r.Salt = make([]byte, saltSize) },
		"prf without wrapping": func(r *record) { r.Protect = ProtectPRF },
	} {
		r := validRecord(t, false)
		spoil(r)
		if _, err := parseRecord(r.encode()); !errors.Is(err, ErrRecord) || !errors.Is(err, keystore.ErrKeystore) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, spoil := range map[string]func(r *record){
		"salt":          func(r *record) { r.Salt = r.Salt[:31] },
		"no credential": func(r *record) { r.Cred = nil },
		"long cred":     func(r *record) { r.Cred = make([]byte, maxCred+1) },
		"missing role":  func(r *record) { delete(r.Wrapped, 0) },
		"extra role":    func(r *record) { delete(r.Wrapped, 2); r.Wrapped[3] = make([]byte, 80) },
		"short wrap":    func(r *record) { r.Wrapped[1] = make([]byte, ivSize+15) },
		"long wrap":     func(r *record) { r.Wrapped[1] = make([]byte, maxWrapped+1) },
	} {
		r := validRecord(t, true)
		spoil(r)
		if _, err := parseRecord(r.encode()); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Not canonical: an indefinite-length or reordered encoding of the
	// same record is refused too.
	b := validRecord(t, false).encode()
	if _, err := parseRecord(append(b, 0)); !errors.Is(err, ErrRecord) {
		t.Errorf("trailing byte: %v", err)
	}
}

// The additional data binds name, role and public key.
func TestWrapAADDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range []string{"a", "ab"} {
		for _, role := range []uint8{0, 1, 2} {
			for _, pub := range [][]byte{{1}, {2}} {
				k := string(wrapAAD(name, role, pub))
				if seen[k] {
					t.Fatalf("AAD collision: %q", k)
				}
				seen[k] = true
			}
		}
	}
}

// No input panics or yields a record that breaks the rules.
func FuzzParseRecord(f *testing.F) {
	f.Add(validRecord(f, false).encode())
	f.Add(validRecord(f, true).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.encode(), b) {
			t.Fatal("accepted a non-canonical record")
		}
		if _, err := core.ParseSigningKey(r.SignPub); err != nil {
			t.Fatal("accepted a bad signing key")
		}
	})
}
