package core

import (
	"crypto/elliptic"
	"crypto/subtle"
	"fmt"
	"io"
	"math/big"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"github.com/loramesh/loramesh-core/keystore"
)

// Ephemeral keys are the only private keys the core holds. Their scalars sit in
// locked slots; the public halves are computed once.

// x25519 is RFC 7748 section 5 X25519(k, u), written over the field package
// because the standard library only offers X25519 through ecdh.NewPrivateKey,
// which copies the scalar to the heap and spends a second ladder on the
// public key. Everything here lives on the stack (Protect erases it).
func x25519(dst, scalar, u *[32]byte) {
	var k [32]byte
	copy(k[:], scalar[:])
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64

	var x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb field.Element
	x1.SetBytes(u[:]) // masks the top bit, as RFC 7748 requires
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()
	swap := 0
	for t := 254; t >= 0; t-- {
		kt := int(k[t/8]>>(t%8)) & 1
		swap ^= kt
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = kt
		a.Add(&x2, &z2)
		aa.Square(&a)
		b.Subtract(&x2, &z2)
		bb.Square(&b)
		e.Subtract(&aa, &bb)
		c.Add(&x3, &z3)
		d.Subtract(&x3, &z3)
		da.Multiply(&d, &a)
		cb.Multiply(&c, &b)
		x3.Add(&da, &cb)
		x3.Square(&x3)
		z3.Subtract(&da, &cb)
		z3.Square(&z3)
		z3.Multiply(&z3, &x1)
		x2.Multiply(&aa, &bb)
		z2.Mult32(&e, 121665)
		z2.Add(&z2, &aa)
		z2.Multiply(&z2, &e)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	x2.Multiply(&x2, z2.Invert(&z2))
	copy(dst[:], x2.Bytes())
	Wipe(k[:])
}

// X25519Base computes the public key X25519(k, 9) with the fixed-base
// Edwards tables, about three times faster than a ladder: clamped k times
// the base point, in Montgomery form.
func X25519Base(dst, k *[32]byte) error {
	var s edwards25519.Scalar
	if _, err := s.SetBytesWithClamping(k[:]); err != nil {
		return err
	}
	var p edwards25519.Point
	copy(dst[:], p.ScalarBaseMult(&s).BytesMontgomery())
	s = edwards25519.Scalar{}
	return nil
}

// X25519 computes the X25519 function into dst and rejects an all-zero
// output (a low-order peer point). Exported for keystore/memory, so there is
// one implementation.
func X25519(dst, scalar, point *[32]byte) error {
	x25519(dst, scalar, point)
	if isZero(dst) {
		return fmt.Errorf("%w: X25519 output is zero", ErrInvalidPublicKey)
	}
	return nil
}

// newEphemeral reads a private key from rand into priv (a locked slot) and
// returns its public key. For 25519 the key is exactly the 32 bytes read, as
// in the Noise test vectors; for P-256, 32-byte candidates are read until one
// is a valid scalar (1 <= k < n).
func newEphemeral(s keystore.Suite, rand io.Reader, priv *[32]byte) (pub keystore.PublicKey, err error) {
	Protect(func() {
		switch s {
		case keystore.X25519:
			if _, err = io.ReadFull(rand, priv[:]); err != nil {
				return
			}
			var u [32]byte
			if err = X25519Base(&u, priv); err == nil {
				pub, err = keystore.ParsePublicKey(s, u[:])
			}
		case keystore.P256:
			err = ErrInvalidPublicKey
			for range 8 {
				if _, err = io.ReadFull(rand, priv[:]); err != nil {
					return
				}
				if P256ScalarValid(priv) {
					pub, err = P256Base(priv)
					return
				}
			}
		default:
			err = ErrUnsupportedSuite
		}
	})
	if err != nil {
		Wipe32(priv)
		return pub, fmt.Errorf("generating ephemeral key: %w", err)
	}
	return pub, nil
}

// ephemeralDH writes DH(priv, peer) into out: the X25519 output or the P-256
// x-coordinate.
func ephemeralDH(priv *[32]byte, peer keystore.PublicKey, out *[32]byte) (err error) {
	Protect(func() {
		switch peer.Suite() {
		case keystore.X25519:
			var u [32]byte
			copy(u[:], peer.Bytes())
			err = X25519(out, priv, &u)
		case keystore.P256:
			err = P256(out, priv, peer)
		default:
			err = ErrUnsupportedSuite
		}
	})
	return err
}

// P-256 through crypto/elliptic's constant-time nistec backend: crypto/ecdh
// would copy the scalar to the heap and compute the public key on every
// NewPrivateKey, a base-point multiplication per DH that the handshake does
// not need.

// p256N is the order of the P-256 group, big endian.
var p256N = [32]byte{
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
}

// P256ScalarValid reports in constant time whether 1 <= k < n.
func P256ScalarValid(k *[32]byte) bool {
	var borrow, nonzero uint32
	for i := 31; i >= 0; i-- {
		d := uint32(k[i]) - uint32(p256N[i]) - borrow
		borrow = (d >> 8) & 1
		nonzero |= uint32(k[i])
	}
	return borrow == 1 && subtle.ConstantTimeEq(int32(nonzero), 0) == 0
}

// P256Base returns the public key of the valid scalar k.
func P256Base(k *[32]byte) (pub keystore.PublicKey, err error) {
	Protect(func() {
		x, y := elliptic.P256().ScalarBaseMult(k[:])
		pub, err = keystore.ParsePublicKey(keystore.P256, elliptic.MarshalCompressed(elliptic.P256(), x, y))
	})
	return pub, err
}

// P256 writes the x-coordinate of k times peer into out. k must be valid and
// peer is on the curve (keystore.ParsePublicKey checked it), so the product
// is never the point at infinity; zero is refused all the same.
func P256(out, k *[32]byte, peer keystore.PublicKey) (err error) {
	if peer.Suite() != keystore.P256 {
		return ErrUnsupportedSuite
	}
	Protect(func() {
		u := peer.Uncompressed()
		px, py := new(big.Int).SetBytes(u[1:33]), new(big.Int).SetBytes(u[33:])
		x, _ := elliptic.P256().ScalarMult(px, py, k[:])
		x.FillBytes(out[:])
		if isZero(out) {
			err = fmt.Errorf("%w: P-256 product is the point at infinity", ErrInvalidPublicKey)
		}
	})
	return err
}

// isZero reports in constant time whether k is all zeros.
func isZero(k *[32]byte) bool {
	var acc byte
	for _, b := range k {
		acc |= b
	}
	return subtle.ConstantTimeByteEq(acc, 0) == 1
}
