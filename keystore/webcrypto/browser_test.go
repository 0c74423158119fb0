//go:build js && wasm && browser

package webcrypto

// Tests that need a browser: IndexedDB and WebAuthn. make webtest runs them
// in headless Chromium (tests/web/gotest.py) with a virtual authenticator
// that has the PRF extension.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"syscall/js"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/jsutil"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

func openKS(t *testing.T, prf bool) (*Keystore, *jsutil.DB) {
	t.Helper()
	o := Options{DB: "test-" + t.Name()}
	if prf {
		o.PRF = &PRFOptions{Timeout: 20 * time.Second}
	}
	ks, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jsutil.OpenDB(o.DB, storeName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close(); raw.Close() })
	return ks, raw
}

func sameIdentity(t *testing.T, a, b keystore.Identity) {
	t.Helper()
	ka, _ := core.SigningKeyOf(a)
	kb, _ := core.SigningKeyOf(b)
	if !ka.Equal(kb) || !equalSuites(a.Suites(), b.Suites()) {
		t.Fatal("reopened identity has other keys")
	}
	for _, s := range a.Suites() {
		x, _ := a.DHPublic(s)
		y, _ := b.DHPublic(s)
		if !x.Equal(y) {
			t.Fatalf("%v key differs", s)
		}
	}
}

// talk runs a handshake with a memory identity in each suite the identity
// has, which exercises the private keys, not only the public ones.
func talk(t *testing.T, id keystore.Identity) {
	t.Helper()
	m, _ := memory.Generate()
	defer m.Close()
	for _, s := range id.Suites() {
		peer, _ := m.DHPublic(s)
		in, m1, err := core.Initiate(id, peer, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, m2, err := core.NewResponder(m, nil).Respond(m1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := in.Finish(m2); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := core.NewCard(id, "x"); err != nil {
		t.Fatal(err)
	}
}

func TestKeystoreLifecycle(t *testing.T) {
	ks, raw := openKS(t, false)
	id, err := ks.Generate("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Generate("alice"); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second generate: %v", err)
	}
	if _, err := ks.Generate("../x"); !errors.Is(err, keystore.ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	again, err := ks.Open("alice")
	if err != nil {
		t.Fatal(err)
	}
	sameIdentity(t, id, again)
	talk(t, again)
	if p, _ := ks.Protection("alice"); p != ProtectNone {
		t.Fatalf("protection %v", p)
	}
	// What is stored: non-extractable private CryptoKeys, which WebCrypto
	// refuses to export.
	v, _ := raw.Get("alice")
	k := v.Get("keys").Get("0")
	if k.Get("type").String() != "private" || k.Get("extractable").Bool() {
		t.Fatal("stored signing key is not a non-extractable private key")
	}
	if _, err := jsutil.Call(js.Global().Get("crypto").Get("subtle"), "exportKey", "pkcs8", k); jsutil.Name(err) != "InvalidAccessError" {
		t.Fatalf("export of a stored key: %v", err)
	}
	if names, _ := ks.List(); len(names) != 1 || names[0] != "alice" {
		t.Fatalf("list %v", names)
	}
	if _, err := ks.Open("bob"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("open missing: %v", err)
	}
	if err := ks.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Open("alice"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("open deleted: %v", err)
	}
	if err := ks.Delete("alice"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

// A damaged record, or one moved under another name, is refused whole.
func TestKeystoreDamagedRecords(t *testing.T) {
	ks, raw := openKS(t, false)
	if _, err := ks.Generate("alice"); err != nil {
		t.Fatal(err)
	}
	v, _ := raw.Get("alice")
	rec, _ := jsutil.Bytes(v.Get("record"))
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x01
		raw.Put("alice", map[string]any{"record": jsutil.U8(bad), "keys": v.Get("keys")})
		if id, err := ks.Open("alice"); err == nil {
			// Open checks every public key against its private key, so
			// what still opens works: the one flip that does is the sign
			// of a P-256 point (02/03), which P-256 DH, x-only, cannot
			// see and both ends of a handshake then use alike.
			if rec[i]&^1 != 2 {
				t.Fatalf("byte %d (%#x) flipped and the identity opened", i, rec[i])
			}
			talk(t, id)
		} else if !errors.Is(err, ErrRecord) && !errors.Is(err, keystore.ErrKeystore) {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	raw.Put("bob", v)
	if _, err := ks.Open("bob"); !errors.Is(err, ErrRecord) {
		t.Fatalf("record under another name: %v", err)
	}
}

// With the PRF option the keys exist on disk only wrapped; the identity
// opens through the security key, in a keystore without the option too
// (the record says how), and its unwrapped keys are non-extractable.
func TestPRFWrapped(t *testing.T) {
	ks, raw := openKS(t, true)
	id, err := ks.Generate("carol")
	if err != nil {
		t.Fatal(err)
	}
	w := id.(*Identity)
	if w.Protection() != ProtectPRF || w.sign.Get("extractable").Bool() {
		t.Fatal("generated PRF identity: wrong protection or extractable key")
	}
	v, _ := raw.Get("carol")
	if !v.Get("keys").IsUndefined() {
		t.Fatal("a PRF identity stored CryptoKeys")
	}
	plain, err := Open(Options{DB: "test-" + t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	again, err := plain.Open("carol")
	if err != nil {
		t.Fatal(err)
	}
	sameIdentity(t, id, again)
	talk(t, again)
	if again.(*Identity).dh[keystore.X25519].priv.Get("extractable").Bool() {
		t.Fatal("unwrapped key is extractable")
	}

	// Tampering: a wrapped key, the salt (another PRF output), the
	// credential (not on this authenticator).
	rec, _ := jsutil.Bytes(v.Get("record"))
	r, _ := parseRecord(rec)
	for name, spoil := range map[string]func(r *record) error{
		"wrapped key": func(r *record) error { r.Wrapped[roleSign][ivSize+3] ^= 1; return ErrUnwrap },
		"salt":        func(r *record) error { r.Salt[0] ^= 1; return ErrUnwrap },
		"public key": func(r *record) error {
			e, _ := ecdh.P256().GenerateKey(rand.Reader)
			k, _ := keystore.FromECDH(e.PublicKey())
			r.DH[2] = k.Bytes()
			return ErrUnwrap
		},
		"credential": func(r *record) error { r.Cred[len(r.Cred)-1] ^= 1; return ErrAuthenticator },
	} {
		c, _ := parseRecord(rec)
		want := spoil(c)
		raw.Put("carol", map[string]any{"record": jsutil.U8(c.encode())})
		if _, err := ks.Open("carol"); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	raw.Put("carol", map[string]any{"record": jsutil.U8(r.encode())})
	if _, err := ks.Open("carol"); err != nil {
		t.Fatalf("restored record: %v", err)
	}
}
