// Package prim holds the primitives loramesh writes itself for secret
// hygiene: the X25519 ladder and fixed-base multiplication, P-256 through
// filippo.io/nistec on the stack, and a stack-only HMAC-SHA256. Their callers run
// them inside secret.Do; everything here keeps its temporaries on the stack.
package prim

import (
	"crypto/subtle"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"filippo.io/nistec"
	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// ErrZero: a DH output is all zeros (a low-order X25519 peer point, or a
// P-256 product whose x-coordinate is 0).
var ErrZero = errs.Sub(keystore.ErrInvalidPublicKey, "DH output is zero")

// x25519 is RFC 7748 section 5 X25519(k, u), written over the field package
// because the standard library only offers X25519 through ecdh.NewPrivateKey,
// which copies the scalar to the heap and spends a second ladder on the
// public key. Everything here lives on the stack (secret.Do erases it).
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
	secret.Wipe(k[:])
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
// output (a low-order peer point) with ErrZero.
func X25519(dst, scalar, point *[32]byte) error {
	x25519(dst, scalar, point)
	if secret.IsZero(dst[:]) {
		return ErrZero
	}
	return nil
}

// P-256 through filippo.io/nistec (the code of the standard library's
// constant-time backend, exported): crypto/ecdh would copy the scalar to the
// heap and compute the public key on every NewPrivateKey, a base-point
// multiplication per DH that the handshake does not need.

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
	secret.Do(func() {
		var p nistec.P256Point
		if _, err = p.ScalarBaseMult(k[:]); err != nil {
			return
		}
		var c [33]byte
		copy(c[:], p.BytesCompressed())
		pub, err = keystore.ParsePublicKey(keystore.P256, c[:])
	})
	return pub, err
}

// P256 writes the x-coordinate of k times peer into out. k must be valid and
// peer is on the curve (keystore.ParsePublicKey checked it), so the product
// is never the point at infinity. A product whose x-coordinate is 0 (a valid
// point, reached with probability 2^-256) is refused with ErrZero like an
// all-zero X25519 output: every backend and the core refuse zero DH outputs.
//
// It runs on filippo.io/nistec points held on the stack: crypto/elliptic
// and crypto/ecdh put the product (the shared secret) in heap slices and
// big.Ints of their own, which stayed in memory after the caller wiped its
// copy (the custody tests found them).
func P256(out, k *[32]byte, peer keystore.PublicKey) (err error) {
	if peer.Suite() != keystore.P256 {
		return keystore.ErrUnsupportedSuite
	}
	secret.Do(func() {
		var u [65]byte
		copy(u[:], peer.Uncompressed())
		var p nistec.P256Point
		if _, err = p.SetBytes(u[:]); err != nil {
			return
		}
		if _, err = p.ScalarMult(&p, k[:]); err != nil {
			return
		}
		var x []byte
		if x, err = p.BytesX(); err != nil {
			return
		}
		copy(out[:], x)
		secret.Wipe(x)
		p = nistec.P256Point{}
		if secret.IsZero(out[:]) {
			err = ErrZero
		}
	})
	return err
}
