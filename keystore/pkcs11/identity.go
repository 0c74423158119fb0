package pkcs11

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// Identity is an identity whose private keys stay on the token. Its methods
// are safe for concurrent use. Public keys were read once, at open.
type Identity struct {
	t      *token
	name   string
	id     []byte
	priv   p11.ObjectHandle // P-256: CKA_SIGN and CKA_DERIVE
	pub    *ecdsa.PublicKey
	dhP256 keystore.PublicKey
	xPriv  p11.ObjectHandle
	dhX    keystore.PublicKey
	hasX   bool
	ops    atomic.Uint64
	closed atomic.Bool

	hmu sync.Mutex
	gen uint64 // the token generation priv and xPriv belong to
}

// handles returns the private key handles, finding them again (by label and
// id) after the token was reattached.
func (i *Identity) handles(sh p11.SessionHandle) (priv, xPriv p11.ObjectHandle, err error) {
	g := i.t.gen.Load()
	i.hmu.Lock()
	defer i.hmu.Unlock()
	if i.gen == g {
		return i.priv, i.xPriv, nil
	}
	ctx := i.t.mod.ctx
	if priv, err = findKey(ctx, sh, i.name, i.id, p11.CKO_PRIVATE_KEY, oidP256); err != nil {
		return 0, 0, err
	}
	if i.hasX {
		privs, err := findAll(ctx, sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
			p11.NewAttribute(p11.CKA_LABEL, i.name), p11.NewAttribute(p11.CKA_ID, i.id)})
		if err != nil {
			return 0, 0, err
		}
		if privs = slices.DeleteFunc(privs, func(h p11.ObjectHandle) bool { return h == priv }); len(privs) != 1 {
			return 0, 0, fmt.Errorf("pkcs11: identity %q: %d X25519 private keys: %w", i.name, len(privs), keystore.ErrNotFound)
		}
		xPriv = privs[0]
	}
	i.priv, i.xPriv, i.gen = priv, xPriv, g
	return priv, xPriv, nil
}

// Name returns the identity's name (its CKA_LABEL).
func (i *Identity) Name() string { return i.name }

// Public returns the P-256 signing key as an *ecdsa.PublicKey.
func (i *Identity) Public() crypto.PublicKey { return i.pub }

// Sign signs a SHA-256 digest with CKM_ECDSA and returns the ASN.1 DER
// signature crypto/ecdsa verifies. Other hashes are refused: the token
// signs whatever 32 bytes it is given, so the hash must be the one we claim.
func (i *Identity) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if i.closed.Load() {
		return nil, keystore.ErrClosed
	}
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, ErrUnsupportedHash
	}
	var raw []byte
	i.ops.Add(1)
	err := i.t.do(func(sh p11.SessionHandle) error {
		ctx := i.t.mod.ctx
		priv, _, err := i.handles(sh)
		if err != nil {
			return err
		}
		if err := ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, priv); err != nil {
			return wrap("signing", err)
		}
		if raw, err = ctx.Sign(sh, digest); err != nil {
			return wrap("signing", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(raw) != 64 {
		return nil, fmt.Errorf("pkcs11: ECDSA signature of %d bytes: %w", len(raw), keystore.ErrKeystore)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])})
}

// Suites lists the DH suites the identity has a key for.
func (i *Identity) Suites() []keystore.Suite {
	if i.hasX {
		return []keystore.Suite{keystore.X25519, keystore.P256}
	}
	return []keystore.Suite{keystore.P256}
}

// DHPublic returns the static DH public key for suite s.
func (i *Identity) DHPublic(s keystore.Suite) (keystore.PublicKey, error) {
	switch {
	case s == keystore.P256:
		return i.dhP256, nil
	case s == keystore.X25519 && i.hasX:
		return i.dhX, nil
	}
	return keystore.PublicKey{}, fmt.Errorf("pkcs11: identity %q has no %v key: %w", i.name, s, keystore.ErrUnsupportedSuite)
}

// DH derives the shared secret with peer on the token into out.
func (i *Identity) DH(peer keystore.PublicKey, out *[32]byte) error {
	if i.closed.Load() {
		return keystore.ErrClosed
	}
	var point []byte
	useX := false
	switch {
	case peer.IsZero():
		return fmt.Errorf("pkcs11: zero peer key: %w", keystore.ErrInvalidPublicKey)
	case peer.Suite() == keystore.P256:
		p, err := peer.ECDH()
		if err != nil {
			return fmt.Errorf("pkcs11: peer key: %w", keystore.ErrInvalidPublicKey)
		}
		point = p.Bytes() // uncompressed: every token takes it
	case peer.Suite() == keystore.X25519 && i.hasX:
		point, useX = peer.Bytes(), true
		if lowOrder(point) {
			// The secret would be all zero; SoftHSM fails such points with
			// CKR_GENERAL_ERROR, so refuse them before the token sees them.
			return fmt.Errorf("pkcs11: low-order X25519 peer key: %w", keystore.ErrInvalidPublicKey)
		}
	default:
		return fmt.Errorf("pkcs11: identity %q has no %v key: %w", i.name, peer.Suite(), keystore.ErrUnsupportedSuite)
	}
	i.ops.Add(1)
	return i.t.do(func(sh p11.SessionHandle) error {
		priv, xPriv, err := i.handles(sh)
		if err != nil {
			return err
		}
		if useX {
			priv = xPriv
		}
		return derive(i.t.mod, sh, priv, point, out)
	})
}

// PrivateKeyOps counts the signatures and derivations asked of the token.
func (i *Identity) PrivateKeyOps() uint64 { return i.ops.Load() }

// Close releases the identity's hold on the token (the last holder logs out
// and unloads the module). The keys stay on the token.
func (i *Identity) Close() error {
	if i == nil || i.closed.Swap(true) {
		return nil
	}
	i.t.release()
	return nil
}

func parseP256(pt []byte) (*ecdsa.PublicKey, keystore.PublicKey, error) {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		return nil, keystore.PublicKey{}, fmt.Errorf("pkcs11: token's P-256 point: %w", keystore.ErrKeystore)
	}
	e, err := ecdh.P256().NewPublicKey(pt)
	if err != nil {
		return nil, keystore.PublicKey{}, fmt.Errorf("pkcs11: token's P-256 point: %w", keystore.ErrKeystore)
	}
	k, err := keystore.FromECDH(e)
	return pub, k, err
}

func parseX25519(pt []byte) (keystore.PublicKey, error) {
	k, err := keystore.ParsePublicKey(keystore.X25519, pt)
	if err != nil {
		return k, fmt.Errorf("pkcs11: token's X25519 key: %w", keystore.ErrKeystore)
	}
	return k, nil
}

// lowOrderPoints are the X25519 u-coordinates of small order and their
// non-canonical encodings (p-1, p, p+1), as libsodium lists them.
var lowOrderPoints = [][32]byte{
	{0},
	{1},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
		0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
		0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
}

// lowOrder reports whether the X25519 key u is of small order; bit 255 is
// ignored, as X25519 ignores it. Public data: no need for constant time.
func lowOrder(u []byte) bool {
	var k [32]byte
	copy(k[:], u)
	k[31] &= 0x7f
	return slices.Contains(lowOrderPoints, k)
}

// prove checks, before the identity is handed out, that every public key it
// will advertise belongs to its private key: the public objects can be
// replaced by whoever can open a session (for identities made before they
// were private), and a card signed by the genuine key would then carry the
// attacker's DH key. P-256: the token signs a fresh challenge, verified here
// in software. X25519: the token derives with a fresh software ephemeral,
// compared with the software DH. Neither counts in PrivateKeyOps.
func (i *Identity) prove() error {
	fail := func(what string) error {
		return fmt.Errorf("pkcs11: identity %q on token %q: %s: %w; do not use its contact card: generate a new identity (or restore the public object from a card you trust)",
			i.name, i.t.label, what, ErrKeyMismatch)
	}
	var challenge [32]byte
	rand.Read(challenge[:])
	var raw []byte
	err := i.t.do(func(sh p11.SessionHandle) error {
		ctx := i.t.mod.ctx
		priv, _, err := i.handles(sh)
		if err != nil {
			return err
		}
		if err := ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, priv); err != nil {
			return wrap("proving the P-256 key", err)
		}
		if raw, err = ctx.Sign(sh, challenge[:]); err != nil {
			return wrap("proving the P-256 key", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(raw) != 64 || !ecdsa.Verify(i.pub, challenge[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])) {
		return fail("P-256 public key")
	}
	if !i.hasX {
		return nil
	}
	var e, epub, soft, tok *[32]byte
	if err := secret.NewN(&e, &epub, &soft, &tok); err != nil {
		return err
	}
	defer func() { secret.Free(e); secret.Free(epub); secret.Free(soft); secret.Free(tok) }()
	if _, err := rand.Read(e[:]); err != nil {
		return err
	}
	var u [32]byte
	copy(u[:], i.dhX.Bytes())
	var serr error
	secret.Do(func() {
		if serr = prim.X25519Base(epub, e); serr == nil {
			serr = prim.X25519(soft, e, &u)
		}
	})
	if serr != nil {
		return fail("X25519 public key")
	}
	if err := i.t.do(func(sh p11.SessionHandle) error {
		_, xPriv, err := i.handles(sh)
		if err != nil {
			return err
		}
		return derive(i.t.mod, sh, xPriv, epub[:], tok)
	}); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(soft[:], tok[:]) != 1 {
		return fail("X25519 public key")
	}
	return nil
}
