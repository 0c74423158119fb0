package pkcs11

import (
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/loramesh/loramesh-core/keystore"
)

// stillWorks checks that ks and id serve requests after a failure elsewhere.
func stillWorks(t *testing.T, ks *Keystore, id *Identity) {
	t.Helper()
	if _, err := ks.List(); err != nil {
		t.Fatalf("keystore unusable: %v", err)
	}
	d := sha256.Sum256([]byte("still"))
	if _, err := id.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatalf("identity unusable: %v", err)
	}
	dhCheck(t, id, keystore.P256)
}

func TestErrors(t *testing.T) {
	ks := openKS(t, tokA)
	id := newIdentity(t, ks, "victim")
	mod := tokA.Module
	notLib := filepath.Join(t.TempDir(), "notalib.so")
	os.WriteFile(notLib, []byte("not an ELF file"), 0o600)
	wrong := []byte("wrong-pin")

	for _, c := range []struct {
		name string
		cfg  Config
		pin  []byte
		want []error
	}{
		{"no module path", Config{Token: tokA.Label}, tokA.PIN, []error{ErrModuleNotFound, keystore.ErrKeystore}},
		{"missing module", Config{ModulePath: "/nonexistent/libnothing.so", Token: tokA.Label}, tokA.PIN, []error{ErrModuleNotFound, keystore.ErrKeystore}},
		{"not a module", Config{ModulePath: notLib, Token: tokA.Label}, tokA.PIN, []error{ErrModuleLoad, keystore.ErrKeystore}},
		{"unknown token", Config{ModulePath: mod, Token: "no-such-token"}, tokA.PIN, []error{ErrTokenNotFound, keystore.ErrNotFound}},
		{"wrong PIN, logged in", Config{ModulePath: mod, Token: tokA.Label}, wrong, []error{keystore.ErrWrongPIN}},
		{"empty PIN", Config{ModulePath: mod, Token: tokA.Label}, []byte{}, []error{keystore.ErrWrongPIN}},
		{"missing pin-source", Config{ModulePath: mod, Token: tokA.Label, PINSource: "file:/nonexistent/pin"}, nil, []error{keystore.ErrWrongPIN}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, err := Open(c.cfg, c.pin)
			if err == nil {
				k.Close()
				t.Fatal("opened")
			}
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Fatalf("error %q is not %q", err, w)
				}
			}
			stillWorks(t, ks, id)
		})
	}

	// A failed Open or Generate returns a nil interface: Close on whatever
	// came back is safe (it was an interface holding a nil *Identity).
	if o, err := ks.Open("nobody"); !errors.Is(err, keystore.ErrNotFound) || o != nil {
		t.Fatalf("unknown key: %v, %#v", err, o)
	}
	if o, err := ks.Generate("victim"); !errors.Is(err, keystore.ErrExists) || o != nil {
		t.Fatalf("existing name: %v, %#v", err, o)
	}
	var nilID *Identity
	nilID.Close()
	if err := ks.Delete("nobody"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("delete unknown key: %v", err)
	}
	if _, err := ks.Open(""); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("open with no name: %v", err)
	}

	// Off-curve and malformed peer keys never reach the token.
	var off [33]byte
	off[0] = 2
	off[32] = 1 // x = 1 is not on P-256
	if _, err := keystore.ParsePublicKey(keystore.P256, off[:]); !errors.Is(err, keystore.ErrInvalidPublicKey) {
		t.Fatalf("off-curve point parsed: %v", err)
	}
	before := id.PrivateKeyOps()
	var out [32]byte
	if err := id.DH(keystore.PublicKey{}, &out); !errors.Is(err, keystore.ErrInvalidPublicKey) {
		t.Fatalf("zero key: %v", err)
	}
	p256only := newIdentity(t, ks, "p256only", keystore.P256)
	xk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	xp, _ := keystore.FromECDH(xk.PublicKey())
	if err := p256only.DH(xp, &out); !errors.Is(err, keystore.ErrUnsupportedSuite) {
		t.Fatalf("X25519 peer on a P-256-only identity: %v", err)
	}
	if _, err := p256only.DHPublic(keystore.X25519); !errors.Is(err, keystore.ErrUnsupportedSuite) {
		t.Fatalf("X25519 public of a P-256-only identity: %v", err)
	}
	// Low-order X25519 points (all-zero secrets) are refused before the
	// token; crypto/ecdh confirms each listed point is one.
	soft, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for i, u := range lowOrderPoints {
		for _, hi := range []byte{0, 0x80} {
			b := u
			b[31] |= hi
			if pk, err := ecdh.X25519().NewPublicKey(b[:]); err == nil {
				if _, err := soft.ECDH(pk); err == nil {
					t.Fatalf("point %d is not of low order", i)
				}
			}
			pk, err := keystore.ParsePublicKey(keystore.X25519, b[:])
			if err != nil { // non-canonical encodings stop at parsing
				if !errors.Is(err, keystore.ErrInvalidPublicKey) {
					t.Fatalf("low-order X25519 point %d: %v", i, err)
				}
				continue
			}
			if err := id.DH(pk, &out); !errors.Is(err, keystore.ErrInvalidPublicKey) {
				t.Fatalf("low-order X25519 point %d: %v", i, err)
			}
		}
	}
	if got := id.PrivateKeyOps() - before; got != 0 {
		t.Fatalf("refused keys reached the token: ops = %d", got)
	}
	stillWorks(t, ks, id)
}

func mustParse(t *testing.T, s keystore.Suite, b []byte) keystore.PublicKey {
	k, err := keystore.ParsePublicKey(s, b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The fresh token is opened by no other test: the first login really goes
// to the token.
func TestWrongPINFirstLogin(t *testing.T) {
	cfg := Config{ModulePath: tokFresh.Module, Token: tokFresh.Label}
	for range 3 {
		if _, err := Open(cfg, []byte("00000000")); !errors.Is(err, keystore.ErrWrongPIN) || !errors.Is(err, p11.Error(p11.CKR_PIN_INCORRECT)) {
			t.Fatalf("wrong PIN: %v", err)
		}
	}
	ks, err := Open(cfg, tokFresh.PIN)
	if err != nil {
		t.Fatalf("right PIN after wrong ones: %v", err)
	}
	t.Cleanup(func() { ks.Close() }) // after newIdentity's cleanup
	if !ks.PINCountLow() {
		t.Error("CKF_USER_PIN_COUNT_LOW not surfaced after wrong PINs")
	}
	newIdentity(t, ks, "after")
}

func TestPINFromURI(t *testing.T) {
	pinFile := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pinFile, append(append([]byte(nil), tokB.PIN...), '\n'), 0o600)
	for _, uri := range []string{
		tokB.URI() + "&pin-value=" + string(tokB.PIN),
		tokB.URI() + "&pin-source=file:" + pinFile,
		tokB.URI() + "&pin-source=" + pinFile,
	} {
		ks, err := OpenURI(uri, nil)
		if err != nil {
			t.Fatalf("open with PIN from URI: %v", err) // the error never holds the PIN
		}
		if _, err := ks.List(); err != nil {
			t.Fatal(err)
		}
		ks.Close()
	}
}

func TestOpenByURIObject(t *testing.T) {
	ks := openKS(t, tokB)
	id := newIdentity(t, ks, "by uri/1")
	base, err := ParseURI(tokB.URI())
	if err != nil {
		t.Fatal(err)
	}
	byName, byID := base, base
	byName.Object = "by uri/1"
	byID.ID = id.id
	for _, c := range []Config{byName, byID} {
		cfg, err := ParseURI(c.URI()) // through the URI and back
		if err != nil {
			t.Fatal(err)
		}
		k, err := Open(cfg, tokB.PIN)
		if err != nil {
			t.Fatal(err)
		}
		o, err := k.Open("")
		if err != nil {
			t.Fatalf("open the URI's object: %v", err)
		}
		if o.(*Identity).Name() != "by uri/1" {
			t.Fatalf("opened %q", o.(*Identity).Name())
		}
		o.Close()
		k.Close()
	}
}
