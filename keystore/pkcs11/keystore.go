// Package pkcs11 keeps loramesh identities on a PKCS#11 token (SoftHSM2 in
// CI, smartcards and HSMs in the field) through github.com/miekg/pkcs11.
//
// An identity named N is a P-256 key pair whose private key has both CKA_SIGN
// (contact cards) and CKA_DERIVE (the P-256 suite), plus, when the token passes
// the X25519 probe, an X25519 key pair for the 25519 suite. Every object of
// the identity is a token object labelled N (CKA_LABEL) and shares one random
// 16-byte CKA_ID; keys are told apart by CKA_CLASS and CKA_EC_PARAMS. Private
// keys are CKA_SENSITIVE and not CKA_EXTRACTABLE.
//
// Each module is loaded and initialised once per process (reference counted
// by path) and each token logged into once; C_Finalize runs when the last
// Keystore or Identity using the module is closed. Operations borrow a
// session from a per-token pool of at most 8 sessions, so many goroutines may
// use one Identity at once.
//
// Process-wide effects: memguard (which holds the PIN) disables core dumps
// at init; SoftHSM2 reads SOFTHSM2_CONF once, at C_Initialize.
//
// Known leak: miekg/pkcs11 copies the PIN (C_Login) and each derived DH
// secret (C_GetAttributeValue) through C heap buffers that it frees without
// wiping; our Go copies are wiped, those are not. Closing it needs a cgo shim
// of our own around the two calls.
package pkcs11

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// PKCS#11 3.0 constants miekg/pkcs11 v1.1.2 lacks.
const (
	ckmECEdwardsKeyPairGen    = 0x1055
	ckmECMontgomeryKeyPairGen = 0x1056
	ckkECEdwards              = 0x40
	ckkECMontgomery           = 0x41
)

var (
	oidP256   = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // 1.2.840.10045.3.1.7
	oidX25519 = []byte{0x06, 0x03, 0x2b, 0x65, 0x6e}                               // 1.3.101.110
)

// suiteMech is how a token makes a suite's key pair.
type suiteMech struct {
	gen, keyType uint
	params       []byte
}

var mechNames = map[uint]string{
	p11.CKM_EC_KEY_PAIR_GEN:   "CKM_EC_KEY_PAIR_GEN",
	p11.CKM_ECDSA:             "CKM_ECDSA",
	p11.CKM_ECDH1_DERIVE:      "CKM_ECDH1_DERIVE",
	ckmECEdwardsKeyPairGen:    "CKM_EC_EDWARDS_KEY_PAIR_GEN",
	ckmECMontgomeryKeyPairGen: "CKM_EC_MONTGOMERY_KEY_PAIR_GEN",
}

// Keystore is a keystore.Keystore on one PKCS#11 token.
type Keystore struct {
	cfg    Config
	t      *token
	pinLow bool
	closed atomic.Bool
}

var (
	_ keystore.Keystore  = (*Keystore)(nil)
	_ keystore.Identity  = (*Identity)(nil)
	_ keystore.OpCounter = (*Identity)(nil)
)

// Open opens the token cfg names, logging in with pin (copied into locked
// memory; the caller still owns and wipes pin) or, when pin is nil, with
// cfg.PINValue or cfg.PINSource.
func Open(cfg Config, pin []byte) (*Keystore, error) {
	t, low, err := acquire(cfg, pin)
	if err != nil {
		return nil, err
	}
	cfg.PINValue = nil
	return &Keystore{cfg: cfg, t: t, pinLow: low}, nil
}

// OpenURI is Open with an RFC 7512 URI (see ParseURI). A pin-value decoded
// from the URI is wiped after login; the uri string itself cannot be.
func OpenURI(uri string, pin []byte) (*Keystore, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	defer secret.Wipe(cfg.PINValue)
	return Open(cfg, pin)
}

// PINCountLow reports that the token had CKF_USER_PIN_COUNT_LOW set when it
// was opened: someone entered wrong PINs since the last good login.
func (k *Keystore) PINCountLow() bool { return k.pinLow }

// Suites lists the DH suites the token can hold keys for.
func (k *Keystore) Suites() []keystore.Suite {
	var s []keystore.Suite
	for _, x := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if _, ok := k.t.suites[x]; ok {
			s = append(s, x)
		}
	}
	return s
}

// Close releases the keystore; identities opened from it stay usable until
// they are closed.
func (k *Keystore) Close() error {
	if k.closed.Swap(true) {
		return nil
	}
	k.t.release()
	return nil
}

// Generate makes identity name on the token: always the P-256 key pair (the
// signer, also the P-256 suite), plus an X25519 key pair when suites asks for
// X25519 or is empty and the token can.
func (k *Keystore) Generate(name string, suites ...keystore.Suite) (keystore.Identity, error) {
	if k.closed.Load() {
		return nil, keystore.ErrClosed
	}
	if name == "" {
		return nil, fmt.Errorf("pkcs11: empty identity name: %w", keystore.ErrNotFound)
	}
	if len(suites) == 0 {
		suites = k.Suites()
	}
	if _, ok := k.t.suites[keystore.P256]; !ok {
		return nil, k.t.probe[keystore.P256] // the signer needs P-256
	}
	withX := false
	for _, s := range suites {
		if _, ok := k.t.suites[s]; !ok {
			if err := k.t.probe[s]; err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("pkcs11: %v: %w", s, keystore.ErrUnsupportedSuite)
		}
		withX = withX || s == keystore.X25519
	}
	id := make([]byte, 16)
	rand.Read(id)

	k.t.genMu.Lock() // no two identities of one name
	defer k.t.genMu.Unlock()
	err := k.t.do(func(sh p11.SessionHandle) error {
		ctx := k.t.mod.ctx
		if _, err := findKey(ctx, sh, name, nil, p11.CKO_PRIVATE_KEY, oidP256); err == nil {
			return fmt.Errorf("pkcs11: identity %q: %w", name, keystore.ErrExists)
		} else if !errors.Is(err, keystore.ErrNotFound) {
			return err
		}
		pub, priv, err := generate(ctx, sh, k.t.suites[keystore.P256], name, id, true)
		if err != nil {
			return err
		}
		if withX {
			if _, _, err := generate(ctx, sh, k.t.suites[keystore.X25519], name, id, true); err != nil {
				ctx.DestroyObject(sh, priv)
				ctx.DestroyObject(sh, pub)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k.openBy(name, nil)
}

// generate makes a key pair of mechanism m, on the token or in the session.
func generate(ctx *p11.Ctx, sh p11.SessionHandle, m suiteMech, label string, id []byte, onToken bool) (pub, priv p11.ObjectHandle, err error) {
	isP256 := bytes.Equal(m.params, oidP256)
	pubT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, m.keyType),
		p11.NewAttribute(p11.CKA_TOKEN, onToken),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
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
	pub, priv, err = ctx.GenerateKeyPair(sh, []*p11.Mechanism{p11.NewMechanism(m.gen, nil)}, pubT, privT)
	if err != nil {
		return 0, 0, wrap("generating "+mechNames[m.gen]+" key pair", err)
	}
	return pub, priv, nil
}

// Open opens identity name; "" means the URI's object (or id).
func (k *Keystore) Open(name string) (keystore.Identity, error) {
	if k.closed.Load() {
		return nil, keystore.ErrClosed
	}
	if name == "" {
		if k.cfg.Object == "" && k.cfg.ID == nil {
			return nil, fmt.Errorf("pkcs11: no identity named: %w", keystore.ErrNotFound)
		}
		return k.openBy(k.cfg.Object, k.cfg.ID)
	}
	return k.openBy(name, nil)
}

func (k *Keystore) openBy(label string, id []byte) (*Identity, error) {
	ident := &Identity{t: k.t, name: label}
	err := k.t.do(func(sh p11.SessionHandle) error {
		ctx := k.t.mod.ctx
		var err error
		if ident.priv, err = findKey(ctx, sh, label, id, p11.CKO_PRIVATE_KEY, oidP256); err != nil {
			return err
		}
		a, err := ctx.GetAttributeValue(sh, ident.priv, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_ID, nil), p11.NewAttribute(p11.CKA_LABEL, nil)})
		if err != nil {
			return wrap("reading key id", err)
		}
		ident.id, ident.name = a[0].Value, string(a[1].Value)
		pt, err := readPoint(ctx, sh, ident.name, ident.id, oidP256)
		if err != nil {
			return err
		}
		if ident.pub, ident.dhP256, err = parseP256(pt); err != nil {
			return err
		}
		// The X25519 key is optional. It is the identity's other private key:
		// SoftHSM does not match its CKA_EC_PARAMS in a search.
		if pt, err = readPoint(ctx, sh, ident.name, ident.id, oidX25519); errors.Is(err, keystore.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		privs, err := findAll(ctx, sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
			p11.NewAttribute(p11.CKA_LABEL, ident.name), p11.NewAttribute(p11.CKA_ID, ident.id)})
		if err != nil {
			return err
		}
		if privs = slices.DeleteFunc(privs, func(h p11.ObjectHandle) bool { return h == ident.priv }); len(privs) != 1 {
			return fmt.Errorf("pkcs11: identity %q: %d X25519 private keys: %w", ident.name, len(privs), keystore.ErrKeystore)
		}
		ident.xPriv = privs[0]
		ident.dhX, err = parseX25519(pt)
		ident.hasX = err == nil
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := k.t.retain(); err != nil {
		return nil, err
	}
	return ident, nil
}

// List returns the names of the identities on the token: the labels of its
// P-256 private keys.
func (k *Keystore) List() ([]string, error) {
	if k.closed.Load() {
		return nil, keystore.ErrClosed
	}
	var names []string
	err := k.t.do(func(sh p11.SessionHandle) error {
		ctx := k.t.mod.ctx
		hs, err := findAll(ctx, sh, keyTemplate("", nil, p11.CKO_PRIVATE_KEY, oidP256))
		if err != nil {
			return err
		}
		for _, h := range hs {
			a, err := ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, nil)})
			if err != nil {
				return wrap("reading label", err)
			}
			if n := string(a[0].Value); n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		return nil
	})
	slices.Sort(names)
	return names, err
}

// Delete destroys every object of identity name. Identities already open
// fail from then on.
func (k *Keystore) Delete(name string) error {
	if k.closed.Load() {
		return keystore.ErrClosed
	}
	if name == "" {
		return fmt.Errorf("pkcs11: empty identity name: %w", keystore.ErrNotFound)
	}
	return k.t.do(func(sh p11.SessionHandle) error {
		ctx := k.t.mod.ctx
		priv, err := findKey(ctx, sh, name, nil, p11.CKO_PRIVATE_KEY, oidP256)
		if err != nil {
			return err
		}
		a, err := ctx.GetAttributeValue(sh, priv, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, nil)})
		if err != nil {
			return wrap("reading key id", err)
		}
		hs, err := findAll(ctx, sh, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_LABEL, name), p11.NewAttribute(p11.CKA_ID, a[0].Value)})
		if err != nil {
			return err
		}
		for _, h := range hs {
			if err := ctx.DestroyObject(sh, h); err != nil {
				return wrap("destroying key", err)
			}
		}
		return nil
	})
}

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

// derive runs CKM_ECDH1_DERIVE (CKD_NULL) of key with point into a session
// secret that must be extractable to be read, reads its 32 bytes into out
// and destroys it. All-zero results are refused.
func derive(ctx *p11.Ctx, sh p11.SessionHandle, key p11.ObjectHandle, point []byte, out *[32]byte) error {
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
	a, err := ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
	if derr := ctx.DestroyObject(sh, h); derr != nil {
		// The secret would outlive us in a pooled session: drop the
		// session, which destroys its objects.
		if err == nil {
			secret.Wipe(a[0].Value)
		}
		return fmt.Errorf("%w: %w", errDropSession, wrap("destroying derived secret", derr))
	}
	if err != nil {
		return wrap("reading derived secret", err)
	}
	v := a[0].Value
	// miekg's C-side copy is freed unwiped: a limit of the binding (see the
	// package documentation).
	defer secret.Wipe(v)
	if len(v) != 32 {
		return fmt.Errorf("pkcs11: derived %d bytes, want 32: %w", len(v), keystore.ErrKeystore)
	}
	copy(out[:], v)
	var zero [32]byte
	if subtle.ConstantTimeCompare(out[:], zero[:]) == 1 {
		return fmt.Errorf("pkcs11: all-zero shared secret: %w", keystore.ErrInvalidPublicKey)
	}
	return nil
}

// probeSuites reads the mechanism list once per token. P-256 needs its
// three mechanisms; X25519 is offered only if a session key pair made the
// standard way (CKM_EC_MONTGOMERY_KEY_PAIR_GEN) or SoftHSM's way
// (CKM_EC_EDWARDS_KEY_PAIR_GEN with curve25519 parameters) derives the same
// secret as crypto/ecdh with a software peer.
func (t *token) probeSuites() error {
	t.suites = map[keystore.Suite]suiteMech{}
	t.probe = map[keystore.Suite]error{}
	list, err := t.mod.ctx.GetMechanismList(t.slot)
	if err != nil {
		return wrap("listing mechanisms", err)
	}
	has := map[uint]bool{}
	for _, m := range list {
		has[m.Mechanism] = true
	}
	missing := func(ms ...uint) error {
		for _, m := range ms {
			if !has[m] {
				return fmt.Errorf("pkcs11: token lacks %s: %w", mechNames[m], keystore.ErrUnsupportedSuite)
			}
		}
		return nil
	}
	if err := missing(p11.CKM_EC_KEY_PAIR_GEN, p11.CKM_ECDSA, p11.CKM_ECDH1_DERIVE); err != nil {
		t.probe[keystore.P256] = err
	} else {
		t.suites[keystore.P256] = suiteMech{p11.CKM_EC_KEY_PAIR_GEN, p11.CKK_EC, oidP256}
	}
	t.probe[keystore.X25519] = missing(ckmECMontgomeryKeyPairGen, p11.CKM_ECDH1_DERIVE)
	for _, m := range []suiteMech{
		{ckmECMontgomeryKeyPairGen, ckkECMontgomery, oidX25519},
		{ckmECEdwardsKeyPairGen, ckkECEdwards, oidX25519},
	} {
		if has[m.gen] && has[p11.CKM_ECDH1_DERIVE] && t.probeX25519(m) == nil {
			t.suites[keystore.X25519] = m
			delete(t.probe, keystore.X25519)
			break
		}
	}
	return nil
}

func (t *token) probeX25519(m suiteMech) error {
	return t.do(func(sh p11.SessionHandle) error {
		ctx := t.mod.ctx
		pub, priv, err := generate(ctx, sh, m, "loramesh-probe", []byte("probe"), false)
		if err != nil {
			return err
		}
		defer ctx.DestroyObject(sh, pub)
		defer ctx.DestroyObject(sh, priv)
		pt, err := pointOf(ctx, sh, pub)
		if err != nil {
			return err
		}
		tokenPub, err := ecdh.X25519().NewPublicKey(pt)
		if err != nil {
			return err
		}
		peer, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		var got [32]byte
		if err := derive(ctx, sh, priv, peer.PublicKey().Bytes(), &got); err != nil {
			return err
		}
		want, err := peer.ECDH(tokenPub)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return errors.New("pkcs11: X25519 probe: token secret differs from crypto/ecdh")
		}
		return nil
	})
}

// retain adds a reference for a new Identity, unless the last holder
// released the token meanwhile. closed is written under registry's lock too.
func (t *token) retain() error {
	registry.Lock()
	defer registry.Unlock()
	if t.closed {
		return keystore.ErrClosed
	}
	t.refs++
	return nil
}
