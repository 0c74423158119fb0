// Package keystore is the seam between the loramesh core and whatever holds an
// identity's long-term private keys: locked memory (keystore/memory), a
// PKCS#11 token or a TPM. The core never sees a long-term private key; it
// asks an Identity to sign or to do one Diffie-Hellman operation.
package keystore

import (
	"crypto"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/subtle"
	"fmt"
)

// Suite names a Noise handshake suite. The numbers travel on the wire.
type Suite uint8

const (
	X25519 Suite = 1 // Noise_IK_25519_ChaChaPoly_SHA256
	P256   Suite = 2 // Noise_IK_P256_ChaChaPoly_SHA256
)

// String returns the Noise protocol name of the suite.
func (s Suite) String() string {
	switch s {
	case X25519:
		return "Noise_IK_25519_ChaChaPoly_SHA256"
	case P256:
		return "Noise_IK_P256_ChaChaPoly_SHA256"
	}
	return fmt.Sprintf("suite(%d)", uint8(s))
}

// PublicKeySize is the size of the suite's public keys on the wire: 32 bytes
// for X25519, a 33-byte compressed SEC1 point for P-256, 0 if unknown.
func (s Suite) PublicKeySize() int {
	switch s {
	case X25519:
		return 32
	case P256:
		return 33
	}
	return 0
}

// PublicKey is a validated Diffie-Hellman public key of one suite. The zero
// value is invalid. X25519 keys are canonical (u < 2^255-19, top bit
// clear); P-256 keys are on the curve and canonically encoded.
type PublicKey struct {
	suite Suite
	b     [33]byte
	u     [65]byte // P-256: the uncompressed point, decompressed once at parse
}

// ParsePublicKey validates b as a public key of suite s: 32 bytes for X25519,
// a 33-byte compressed point on P-256 (x < p, prefix 02 or 03) for P-256.
func ParsePublicKey(s Suite, b []byte) (PublicKey, error) {
	var k PublicKey
	if n := s.PublicKeySize(); n == 0 {
		return k, ErrUnsupportedSuite
	} else if len(b) != n {
		return k, fmt.Errorf("%w: %v key must be %d bytes", ErrInvalidPublicKey, s, n)
	}
	if s == X25519 && (b[31]&0x80 != 0 || x25519AtLeastP(b)) {
		// Non-canonical u (top bit set, or u >= 2^255-19) would let one
		// private key appear as several peers.
		return k, fmt.Errorf("%w: non-canonical X25519 key", ErrInvalidPublicKey)
	}
	if s == P256 {
		// UnmarshalCompressed rejects x >= p and points with no square root;
		// 33 bytes cannot encode the point at infinity.
		x, y := elliptic.UnmarshalCompressed(elliptic.P256(), b)
		if x == nil {
			return k, fmt.Errorf("%w: not a compressed P-256 point", ErrInvalidPublicKey)
		}
		k.u[0] = 4
		x.FillBytes(k.u[1:33])
		y.FillBytes(k.u[33:])
	}
	k.suite = s
	copy(k.b[:], b)
	return k, nil
}

// x25519AtLeastP reports whether the little-endian b (top bit clear) is at
// least p = 2^255 - 19: 0x7f, thirty 0xff, then a low byte of 0xed or more.
func x25519AtLeastP(b []byte) bool {
	if b[31] != 0x7f || b[0] < 0xed {
		return false
	}
	for _, c := range b[1:31] {
		if c != 0xff {
			return false
		}
	}
	return true
}

// Suite reports the key's suite (0 for the zero value).
func (k PublicKey) Suite() Suite { return k.suite }

// Bytes returns a copy of the wire encoding.
func (k PublicKey) Bytes() []byte {
	return append([]byte(nil), k.b[:k.suite.PublicKeySize()]...)
}

// Equal compares in constant time.
func (k PublicKey) Equal(o PublicKey) bool {
	return k.suite == o.suite && subtle.ConstantTimeCompare(k.b[:], o.b[:]) == 1
}

// IsZero reports whether k is the invalid zero value.
func (k PublicKey) IsZero() bool { return k.suite == 0 }

// ECDH returns the key as a crypto/ecdh public key (uncompressed for P-256),
// the form tokens and TPMs take.
func (k PublicKey) ECDH() (*ecdh.PublicKey, error) {
	switch k.suite {
	case X25519:
		return ecdh.X25519().NewPublicKey(k.b[:32])
	case P256:
		return ecdh.P256().NewPublicKey(k.u[:])
	}
	return nil, ErrUnsupportedSuite
}

// Uncompressed returns the SEC1 uncompressed form (65 bytes) of a P-256
// key, nil for other suites.
func (k PublicKey) Uncompressed() []byte {
	if k.suite != P256 {
		return nil
	}
	return append([]byte(nil), k.u[:]...)
}

// FromECDH converts a crypto/ecdh public key (X25519 or P-256) to a PublicKey.
func FromECDH(p *ecdh.PublicKey) (PublicKey, error) {
	b := p.Bytes()
	switch p.Curve() {
	case ecdh.X25519():
		return ParsePublicKey(X25519, b)
	case ecdh.P256():
		c := make([]byte, 33)
		c[0] = 2 | b[64]&1
		copy(c[1:], b[1:33])
		return ParsePublicKey(P256, c)
	}
	return PublicKey{}, ErrUnsupportedSuite
}

// Identity is one long-term identity, wherever its private keys live.
//
// Sign (crypto.Signer) signs contact cards: Ed25519 for memory identities
// (opts crypto.Hash(0), message unhashed), ECDSA P-256 over a SHA-256 digest
// for hardware identities (ASN.1 DER signature, as crypto/ecdsa returns).
// A holder that must hash the message itself (WebCrypto's ECDSA has no way
// to sign a digest) also implements crypto.MessageSigner and fails Sign; the
// core signs through crypto.SignMessage, which works with both kinds.
type Identity interface {
	crypto.Signer
	// Suites lists the handshake suites this identity has a DH key for.
	Suites() []Suite
	// DHPublic returns the identity's static DH public key for suite s.
	DHPublic(s Suite) (PublicKey, error)
	// DH writes the shared secret between the identity's static key of
	// peer.Suite() and peer into out: the X25519 output, or the P-256
	// x-coordinate. out belongs to the caller, who keeps it in locked memory.
	// All-zero results are rejected with ErrInvalidPublicKey.
	DH(peer PublicKey, out *[32]byte) error
	// Close releases the identity's handles and wipes what it holds.
	Close() error
}

// Keystore creates, finds and removes identities by name.
type Keystore interface {
	// Generate makes a new identity holding keys for the given suites (all
	// the keystore can do when none are given).
	Generate(name string, suites ...Suite) (Identity, error)
	Open(name string) (Identity, error)
	List() ([]string, error)
	Delete(name string) error
	Close() error
}

// OpCounter is implemented by hardware identities: the number of private-key
// operations (sign, DH) asked of the device so far.
type OpCounter interface {
	PrivateKeyOps() uint64
}
