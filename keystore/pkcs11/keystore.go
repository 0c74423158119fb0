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
// Public key objects are CKA_PRIVATE (invisible without the PIN, so nobody
// without it can destroy or replace them) and not CKA_MODIFIABLE. They stay
// CKA_DESTROYABLE, so that Delete can remove them: whoever has the PIN can
// destroy the private keys anyway. A token that ignores or refuses (then the
// key pair is made without them) CKA_PRIVATE or CKA_MODIFIABLE on public
// keys, and identities made before this layout, leave the public objects to
// anyone who can open a session; so Open proves every public key against its
// private key (the token signs a fresh challenge for P-256 and derives with a
// fresh software ephemeral for X25519) and refuses a mismatch with
// ErrKeyMismatch.
//
// A token whose storage becomes unreadable or goes away under an open
// keystore is reported with ErrTokenUnavailable (not as a missing identity,
// and List fails rather than come back empty); the next call after it is
// back re-initialises the module (C_Finalize, C_Initialize: SoftHSM reads
// its token directories only then), logs in again with the kept PIN and
// finds the identities' handles again. This needs the module to be ours (we
// ran C_Initialize); one initialised by other code is not restarted.
//
// Each module is loaded and initialised once per process (reference counted
// by path) and each token logged into once; C_Finalize runs when the last
// Keystore or Identity using the module is closed. Operations borrow a
// session from a per-token pool of at most 8 sessions, so many goroutines may
// use one Identity at once.
//
// Secrets: the PIN is kept in locked memory (secret.Buffer) while the token
// is open, to check later opens. C_Login and the read of each derived DH
// secret are our own cgo calls (secretcalls.go) that point the module at
// locked memory directly, so no C heap copy of either is made on our side
// (miekg/pkcs11 would copy both through malloc'ed buffers it frees unwiped).
//
// Process-wide effects: SoftHSM2 reads SOFTHSM2_CONF once, at C_Initialize.
package pkcs11

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

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
	if k == nil || k.closed.Swap(true) {
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
	// A token's labels are its own namespace (other tools make labels with
	// spaces and slashes, which RFC 7512 URIs escape), so the file-name rule
	// of the other keystores (files.CheckName) is not applied here; the C ABI
	// applies it to every keystore.
	if name == "" {
		return nil, fmt.Errorf("pkcs11: empty identity name: %w", keystore.ErrInvalidName)
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
	return k.open(name, nil)
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
		return k.open(k.cfg.Object, k.cfg.ID)
	}
	return k.open(name, nil)
}

// open is openBy returning an interface that is nil on every error (never
// an interface holding a nil *Identity, whose Close would panic).
func (k *Keystore) open(label string, id []byte) (keystore.Identity, error) {
	ident, err := k.openBy(label, id)
	if err != nil {
		return nil, err
	}
	return ident, nil
}

func (k *Keystore) openBy(label string, id []byte) (*Identity, error) {
	ident := &Identity{t: k.t, name: label, gen: k.t.gen.Load()}
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
	if err == nil {
		err = ident.prove()
	}
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
	if err == nil {
		// SoftHSM answers an unreadable token's searches with nothing:
		// an empty list must not hide that.
		err = k.t.healthy()
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
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
