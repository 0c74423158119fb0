package pkcs11

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/loramesh/loramesh-core/keystore"
)

// The attacker: a second process that can open a session on the token but
// does not know the PIN. It destroys the identity's public key object of one
// suite and creates one with the same label and id holding its own point.
const swapEnv = "LORAMESH_P11_SWAP"

// swapChild runs in the re-executed test binary. Exit 0: swapped; 3: the
// public object is not visible without the PIN; 1: failure.
func swapChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "swap:", err); return 1 }
	ctx := p11.New(os.Getenv("SWAP_MODULE"))
	if ctx == nil {
		return fail(errors.New("module"))
	}
	if err := ctx.Initialize(); err != nil {
		return fail(err)
	}
	defer ctx.Finalize()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return fail(err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		if ti, err := ctx.GetTokenInfo(s); err == nil && ti.Label == os.Getenv("SWAP_TOKEN") {
			slot, found = s, true
		}
	}
	if !found {
		return fail(errors.New("token"))
	}
	sh, err := ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION) // no C_Login
	if err != nil {
		return fail(err)
	}
	id, _ := hex.DecodeString(os.Getenv("SWAP_ID"))
	params, _ := hex.DecodeString(os.Getenv("SWAP_PARAMS"))
	point, _ := hex.DecodeString(os.Getenv("SWAP_POINT"))
	hs, err := findAll(ctx, sh, keyTemplate(os.Getenv("SWAP_LABEL"), id, p11.CKO_PUBLIC_KEY, params))
	if err != nil {
		return fail(err)
	}
	if len(hs) == 0 {
		return 3
	}
	a, err := ctx.GetAttributeValue(sh, hs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return fail(err)
	}
	for _, h := range hs {
		if err := ctx.DestroyObject(sh, h); err != nil {
			return fail(err)
		}
	}
	_, err = ctx.CreateObject(sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		{Type: p11.CKA_KEY_TYPE, Value: a[0].Value},
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_EC_PARAMS, params),
		p11.NewAttribute(p11.CKA_EC_POINT, append([]byte{0x04, byte(len(point))}, point...)),
		p11.NewAttribute(p11.CKA_LABEL, os.Getenv("SWAP_LABEL")),
		p11.NewAttribute(p11.CKA_ID, id),
	})
	if err != nil {
		return fail(err)
	}
	return 0
}

// swap runs the attacker against identity id's public key of suite s and
// returns its exit code.
func swap(t *testing.T, tok string, id *Identity, s keystore.Suite) int {
	t.Helper()
	var params, point []byte
	switch s {
	case keystore.X25519:
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		params, point = oidX25519, k.PublicKey().Bytes()
	case keystore.P256:
		k, _ := ecdh.P256().GenerateKey(rand.Reader)
		params, point = oidP256, k.PublicKey().Bytes()
	}
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), swapEnv+"=1", "SWAP_MODULE="+tokA.Module, "SWAP_TOKEN="+tok,
		"SWAP_LABEL="+id.name, "SWAP_ID="+hex.EncodeToString(id.id),
		"SWAP_PARAMS="+hex.EncodeToString(params), "SWAP_POINT="+hex.EncodeToString(point))
	out, err := c.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		return 3
	}
	if err != nil {
		t.Fatalf("attacker process: %v\n%s", err, out)
	}
	return 0
}

// Identities made the old way (public objects readable and destroyable
// without the PIN): a second process without the PIN replaces a public key,
// and the owner's next open refuses the identity with ErrKeyMismatch, naming
// the token and the identity, instead of advertising the attacker's key.
func TestSubstitutedPublicKeyDetected(t *testing.T) {
	ks := openKS(t, tokA)
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		publicObjectsPrivate = false
		victim := newIdentity(t, ks, "victim-"+map[keystore.Suite]string{keystore.X25519: "x", keystore.P256: "p"}[s])
		publicObjectsPrivate = true
		if code := swap(t, tokA.Label, victim, s); code != 0 {
			t.Fatalf("%v: the old layout should let the attacker swap (exit %d)", s, code)
		}
		o, err := ks.Open(victim.name)
		if !errors.Is(err, ErrKeyMismatch) || !errors.Is(err, keystore.ErrKeystore) {
			if o != nil {
				o.Close()
			}
			t.Fatalf("%v key swapped by another process: open gave %v, want ErrKeyMismatch", s, err)
		}
		if o != nil {
			t.Fatal("a failed open returned a non-nil identity")
		}
		for _, want := range []string{victim.name, tokA.Label, s.String()[9:13]} {
			if !strings.Contains(err.Error(), want) && !(want == "P256" && strings.Contains(err.Error(), "P-256")) {
				t.Fatalf("error %q does not name %q", err, want)
			}
		}
	}
}

// Identities made now: their public objects are private, so the attacker
// without the PIN finds nothing to destroy, and the identity opens with its
// own keys.
func TestPublicObjectsNeedPIN(t *testing.T) {
	ks := openKS(t, tokA)
	id := newIdentity(t, ks, "guarded")
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if code := swap(t, tokA.Label, id, s); code != 3 {
			t.Fatalf("%v: attacker without the PIN reached the public object", s)
		}
	}
	o, err := ks.Open("guarded")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		a, _ := id.DHPublic(s)
		b, _ := o.DHPublic(s)
		if !a.Equal(b) {
			t.Fatalf("%v key changed", s)
		}
	}
	if !id.Public().(*ecdsa.PublicKey).Equal(o.Public()) {
		t.Fatal("signing key changed")
	}
	dhCheck(t, o, keystore.X25519)
}
