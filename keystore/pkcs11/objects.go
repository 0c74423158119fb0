package pkcs11

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

var (
	oidP256   = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // 1.2.840.10045.3.1.7
	oidX25519 = []byte{0x06, 0x03, 0x2b, 0x65, 0x6e}                               // 1.3.101.110
)

func keyTemplate(label string, id []byte, class uint, params []byte) []*p11.Attribute {
	t := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, class),
		p11.NewAttribute(p11.CKA_EC_PARAMS, params),
	}
	if label != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, label))
	}
	if id != nil {
		t = append(t, p11.NewAttribute(p11.CKA_ID, id))
	}
	return t
}

// findKey returns the one key matching; ErrNotFound if none.
func findKey(ctx *p11.Ctx, sh p11.SessionHandle, label string, id []byte, class uint, params []byte) (p11.ObjectHandle, error) {
	hs, err := findAll(ctx, sh, keyTemplate(label, id, class, params))
	switch {
	case err != nil:
		return 0, err
	case len(hs) == 0:
		return 0, fmt.Errorf("pkcs11: identity %q: %w", label, keystore.ErrNotFound)
	case len(hs) > 1:
		return 0, fmt.Errorf("pkcs11: %d keys match identity %q: %w", len(hs), label, keystore.ErrKeystore)
	}
	return hs[0], nil
}

func findAll(ctx *p11.Ctx, sh p11.SessionHandle, tmpl []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(sh, tmpl); err != nil {
		return nil, wrap("finding objects", err)
	}
	defer ctx.FindObjectsFinal(sh)
	var all []p11.ObjectHandle
	for {
		hs, _, err := ctx.FindObjects(sh, 64)
		if err != nil {
			return nil, wrap("finding objects", err)
		}
		all = append(all, hs...)
		if len(hs) < 64 {
			return all, nil
		}
	}
}

// readPoint reads CKA_EC_POINT of the public key matching, unwrapping the
// DER OCTET STRING most tokens put around the point.
func readPoint(ctx *p11.Ctx, sh p11.SessionHandle, label string, id []byte, params []byte) ([]byte, error) {
	h, err := findKey(ctx, sh, label, id, p11.CKO_PUBLIC_KEY, params)
	if err != nil {
		return nil, err
	}
	return pointOf(ctx, sh, h)
}

func pointOf(ctx *p11.Ctx, sh p11.SessionHandle, h p11.ObjectHandle) ([]byte, error) {
	a, err := ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, wrap("reading CKA_EC_POINT", err)
	}
	p := a[0].Value
	if len(p) >= 2 && p[0] == 0x04 && int(p[1]) == len(p)-2 && p[1] < 0x80 {
		p = p[2:] // DER OCTET STRING, short form: both 32- and 65-byte points fit
	}
	return p, nil
}

// publicObjectsPrivate is false only in tests that make identities the way
// earlier versions did (public objects readable and destroyable without the
// PIN), to check that a substitution is caught at open.
var publicObjectsPrivate = true

// generate makes a key pair of mechanism m, on the token or in the session.
func generate(ctx *p11.Ctx, sh p11.SessionHandle, m suiteMech, label string, id []byte, onToken bool) (pub, priv p11.ObjectHandle, err error) {
	isP256 := bytes.Equal(m.params, oidP256)
	pubT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, m.keyType),
		p11.NewAttribute(p11.CKA_TOKEN, onToken),
		// Private: invisible to, so not destroyable or replaceable by,
		// anyone without the PIN. Not modifiable: not even with it.
		p11.NewAttribute(p11.CKA_PRIVATE, publicObjectsPrivate),
		p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_VERIFY, isP256),
		p11.NewAttribute(p11.CKA_EC_PARAMS, m.params),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	privT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, m.keyType),
		p11.NewAttribute(p11.CKA_TOKEN, onToken),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, isP256),
		p11.NewAttribute(p11.CKA_DERIVE, true),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	mech := []*p11.Mechanism{p11.NewMechanism(m.gen, nil)}
	pub, priv, err = ctx.GenerateKeyPair(sh, mech, pubT, privT)
	// A token that refuses the protective attributes of the public key
	// (CKA_MODIFIABLE false, then CKA_PRIVATE true) gets a key pair without
	// them: its public objects stay replaceable by whoever can open a
	// session, and the proof at every open is what catches a replacement.
	for _, drop := range []uint{p11.CKA_MODIFIABLE, p11.CKA_PRIVATE} {
		if !refusedTemplate(err) {
			break
		}
		pubT = slices.DeleteFunc(pubT, func(a *p11.Attribute) bool { return a.Type == drop })
		pub, priv, err = ctx.GenerateKeyPair(sh, mech, pubT, privT)
	}
	if err != nil {
		return 0, 0, wrap("generating "+mechNames[m.gen]+" key pair", err)
	}
	return pub, priv, nil
}

// refusedTemplate reports the return codes of a token that does not take an
// attribute in a template.
func refusedTemplate(err error) bool {
	for _, rv := range []uint{p11.CKR_ATTRIBUTE_TYPE_INVALID, p11.CKR_ATTRIBUTE_VALUE_INVALID,
		p11.CKR_TEMPLATE_INCONSISTENT, p11.CKR_ATTRIBUTE_READ_ONLY} {
		if errors.Is(err, p11.Error(rv)) {
			return true
		}
	}
	return false
}

// derive runs CKM_ECDH1_DERIVE (CKD_NULL) of key with point into a session
// secret that must be extractable to be read, reads its 32 bytes into out
// and destroys it. All-zero results are refused. The value goes from the
// module straight into out (readValue), never through a C heap buffer.
func derive(m *module, sh p11.SessionHandle, key p11.ObjectHandle, point []byte, out *[32]byte) error {
	ctx := m.ctx
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDH1_DERIVE, p11.NewECDH1DeriveParams(p11.CKD_NULL, nil, point))}
	h, err := ctx.DeriveKey(sh, mech, key, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_SENSITIVE, false),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
	})
	if err != nil {
		return wrap("deriving", err)
	}
	err = m.readValue(sh, h, out)
	if derr := ctx.DestroyObject(sh, h); derr != nil {
		// The secret would outlive us in a pooled session: drop the
		// session, which destroys its objects.
		secret.Wipe(out[:])
		return fmt.Errorf("%w: %w", errDropSession, wrap("destroying derived secret", derr))
	}
	if err != nil {
		secret.Wipe(out[:])
		return wrap("reading derived secret", err)
	}
	if secret.IsZero(out[:]) {
		return fmt.Errorf("pkcs11: deriving: %w", prim.ErrZero)
	}
	return nil
}
