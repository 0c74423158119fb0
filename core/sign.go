package core

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"math/big"

	"filippo.io/edwards25519"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Signature algorithms of signing keys, as cards carry them (docs/PROTOCOL.md
// §5): memory identities sign with Ed25519, hardware identities with ECDSA
// P-256 over SHA-256. Signatures are 64 bytes either way (ECDSA as r || s).
const (
	SigEd25519   = 1
	SigECDSAP256 = 2

	SignatureSize = 64
)

// Signing contexts: every signature covers context || message, so a
// signature made for one use is worthless for the other.
const (
	cardContext    = "loramesh card v1"
	messageContext = "loramesh sign v1\x00"
)

// SigningKey is an identity's public signing key in its wire form: a 32-byte
// Ed25519 key or a 33-byte compressed P-256 point. Parsed keys are valid:
// Ed25519 keys canonical and not of small order, P-256 keys on the curve.
type SigningKey struct {
	alg int
	b   []byte
	pub crypto.PublicKey // ed25519.PublicKey or *ecdsa.PublicKey
}

// SigningKeyOf returns the signing key of a signer: an Ed25519 or a P-256
// ECDSA public key.
func SigningKeyOf(s crypto.Signer) (SigningKey, error) {
	switch pub := s.Public().(type) {
	case ed25519.PublicKey:
		return ParseSigningKey(pub)
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			return ParseSigningKey(elliptic.MarshalCompressed(pub.Curve, pub.X, pub.Y))
		}
	}
	return SigningKey{}, fmt.Errorf("signing key is not Ed25519 or P-256: %w", ErrUnsupportedSuite)
}

// ParseSigningKey validates the wire form of a signing key; its length says
// the algorithm: 32 bytes Ed25519, 33 bytes a compressed P-256 point.
func ParseSigningKey(b []byte) (SigningKey, error) {
	k := SigningKey{b: bytes.Clone(b)}
	switch len(b) {
	case ed25519.PublicKeySize:
		k.alg = SigEd25519
		if !validEd25519Key(b) {
			return SigningKey{}, fmt.Errorf("Ed25519 key not canonical or of small order: %w", ErrInvalidPublicKey)
		}
		k.pub = ed25519.PublicKey(k.b)
	case 33:
		k.alg = SigECDSAP256
		x, y := elliptic.UnmarshalCompressed(elliptic.P256(), b)
		if x == nil {
			return SigningKey{}, fmt.Errorf("not a compressed P-256 point: %w", ErrInvalidPublicKey)
		}
		k.pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	default:
		return SigningKey{}, fmt.Errorf("signing key of %d bytes: %w", len(b), ErrInvalidPublicKey)
	}
	return k, nil
}

// validEd25519Key refuses non-canonical encodings (y >= p, which
// edwards25519 would reduce) and points of small order, such as the neutral
// point: with one of those as the key, a crafted signature verifies every
// message.
func validEd25519Key(b []byte) bool {
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil || !bytes.Equal(p.Bytes(), b) {
		return false
	}
	return new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 0
}

// ID identifies the key, and so the identity: SHA-256("loramesh
// fingerprint v1" || algorithm || key). Handshakes bind it (docs/PROTOCOL.md
// §6); its first 10 bytes are the fingerprint.
func (k SigningKey) ID() (id [32]byte) {
	h := sha256.New()
	h.Write([]byte("loramesh fingerprint v1"))
	h.Write([]byte{byte(k.alg)})
	h.Write(k.b)
	h.Sum(id[:0])
	return id
}

// FingerprintSize is the length of the fingerprint in bytes (80 bits).
const FingerprintSize = 10

// Fingerprint is 80 bits of the key's ID in base32, four groups of four,
// short enough to read aloud and compare.
func (k SigningKey) Fingerprint() string { return FormatFingerprint(k.ID()) }

// FormatFingerprint shows the first FingerprintSize bytes of id as
// "XXXX-XXXX-XXXX-XXXX".
func FormatFingerprint(id [32]byte) string {
	s := base32.StdEncoding.EncodeToString(id[:FingerprintSize])
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// Alg is the key's signature algorithm (SigEd25519 or SigECDSAP256).
func (k SigningKey) Alg() int { return k.alg }

// Bytes returns a copy of the wire form.
func (k SigningKey) Bytes() []byte { return bytes.Clone(k.b) }

// Public returns the key as an ed25519.PublicKey or *ecdsa.PublicKey.
func (k SigningKey) Public() crypto.PublicKey { return k.pub }

// Equal reports whether both are the same key.
func (k SigningKey) Equal(o SigningKey) bool { return k.alg == o.alg && bytes.Equal(k.b, o.b) }

// p256HalfN is (n-1)/2 for P-256: an ECDSA s above it is the high twin of a
// valid signature (n-s verifies too), refused so each message has one
// signature encoding.
var p256HalfN = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// verify checks sig over context || msg.
func (k SigningKey) verify(context string, msg, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	full := append([]byte(context), msg...)
	switch pub := k.pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(pub, full, sig)
	case *ecdsa.PublicKey:
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		d := sha256.Sum256(full)
		return s.Cmp(p256HalfN) <= 0 && ecdsa.Verify(pub, d[:], r, s)
	}
	return false
}

// VerifyMessage checks a signature made by SignMessage; ErrAuth if it does
// not verify.
func (k SigningKey) VerifyMessage(msg, sig []byte) error {
	if !k.verify(messageContext, msg, sig) {
		return fmt.Errorf("verify: %w", ErrAuth)
	}
	return nil
}

// SignMessage signs msg (any bytes) with the identity's signing key over
// "loramesh sign v1" || 0x00 || msg: Ed25519, or ECDSA P-256 over SHA-256 of
// it as low-s r || s. The context keeps these apart from card signatures.
func SignMessage(id keystore.Identity, msg []byte) ([]byte, error) {
	k, err := SigningKeyOf(id)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sig, err := sign(id, k.alg, messageContext, msg)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}

// sign returns the 64-byte signature of context || msg. crypto.SignMessage
// gives a MessageSigner (WebCrypto) the message, other signers its digest.
func sign(id keystore.Identity, alg int, context string, msg []byte) ([]byte, error) {
	full := append([]byte(context), msg...)
	if alg == SigEd25519 {
		return crypto.SignMessage(id, rand.Reader, full, crypto.Hash(0))
	}
	der, err := crypto.SignMessage(id, rand.Reader, full, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return rawLowS(der)
}

// rawLowS converts an ASN.1 DER ECDSA P-256 signature, as crypto.Signer
// returns it, to 64 bytes r || s with s in the lower half (s and n-s both
// verify; tokens and TPMs return either).
func rawLowS(der []byte) ([]byte, error) {
	var r, s []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, fmt.Errorf("signer returned a bad ECDSA signature: %w", ErrKeystore)
	}
	n := elliptic.P256().Params().N
	ri, si := new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)
	if ri.Sign() == 0 || si.Sign() == 0 || ri.Cmp(n) >= 0 || si.Cmp(n) >= 0 {
		return nil, fmt.Errorf("signer returned a bad ECDSA signature: %w", ErrKeystore)
	}
	if si.Cmp(p256HalfN) > 0 {
		si.Sub(n, si)
	}
	return append(ri.FillBytes(make([]byte, 32)), si.FillBytes(make([]byte, 32))...), nil
}
