package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"

	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// signContext prefixes every lm_identity_sign message. Contact cards sign
// "loramesh card v1" || body: the two differ at byte 9, so no message given
// to lm_identity_sign yields a card signature.
const signContext = "loramesh sign v1\x00"

func getIdentity(h C.uint64_t) (keystore.Identity, bool) {
	v, found := lookup(h, kindIdentity)
	if !found {
		return nil, false
	}
	return v.(keystore.Identity), true
}

//export lm_identity_generate
func lm_identity_generate(id *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	if id == nil {
		return failf(errInvalidArg, "lm_identity_generate: NULL identity")
	}
	ident, err := memory.Generate()
	if err != nil {
		return fail(err, errKeystore)
	}
	*id = newHandle(kindIdentity, ident)
	return ok
}

//export lm_identity_from_seed
func lm_identity_from_seed(seed *C.uint8_t, n C.size_t, id *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_from_seed"
	if seed == nil || n != memory.SeedSize || id == nil {
		return failf(errInvalidArg, "%s: seed must be %d bytes", fn, memory.SeedSize)
	}
	s, err := newLocked(seed, n)
	if err != nil {
		return fail(err, errInvalidArg)
	}
	defer s.free()
	ident, err := memory.FromSeed(s.bytes())
	if err != nil {
		return fail(err, errKeystore)
	}
	*id = newHandle(kindIdentity, ident)
	return ok
}

// signingKey is the identity's signing public key on the wire: Ed25519 (32
// bytes) or compressed P-256 (33).
func signingKey(id keystore.Identity) ([]byte, error) {
	switch pub := id.Public().(type) {
	case ed25519.PublicKey:
		return append([]byte(nil), pub...), nil
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			return elliptic.MarshalCompressed(pub.Curve, pub.X, pub.Y), nil
		}
	}
	return nil, fmt.Errorf("%w: signing key type", keystore.ErrUnsupportedSuite)
}

//export lm_identity_public_key
func lm_identity_public_key(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_public_key"
	o := outBuf(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	id, found := getIdentity(h)
	if !found {
		return badHandle(fn)
	}
	k, err := signingKey(id)
	if err != nil {
		return fail(err, errInternal)
	}
	return simple(fn, o, k)
}

//export lm_identity_x25519_public
func lm_identity_x25519_public(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_x25519_public"
	o := outBuf(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	id, found := getIdentity(h)
	if !found {
		return badHandle(fn)
	}
	m, isMem := id.(*memory.Identity)
	if !isMem {
		return failf(errUnsupported, "%s: not a software identity", fn)
	}
	return simple(fn, o, m.DeriveX25519().Bytes())
}

// suiteArg checks the C int itself: converting first to the 8-bit Suite
// would let 257 pass as 1.
func suiteArg(s C.int) (keystore.Suite, bool) {
	switch s {
	case C.int(keystore.X25519), C.int(keystore.P256):
		return keystore.Suite(s), true
	}
	return 0, false
}

//export lm_identity_dh_public
func lm_identity_dh_public(h C.uint64_t, suite C.int, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_dh_public"
	o := outBuf(buf, n)
	s, good := suiteArg(suite)
	if !o.valid() || !good {
		return failf(errInvalidArg, "%s: NULL buffer or unknown suite", fn)
	}
	id, found := getIdentity(h)
	if !found {
		return badHandle(fn)
	}
	k, err := id.DHPublic(s)
	if err != nil {
		return fail(err, errUnsupported)
	}
	return simple(fn, o, k.Bytes())
}

//export lm_identity_suites
func lm_identity_suites(h C.uint64_t, mask *C.uint32_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_suites"
	if mask == nil {
		return failf(errInvalidArg, "%s: NULL mask", fn)
	}
	id, found := getIdentity(h)
	if !found {
		return badHandle(fn)
	}
	var m C.uint32_t
	for _, s := range id.Suites() {
		m |= 1 << s
	}
	*mask = m
	return ok
}

//export lm_identity_sign
func lm_identity_sign(h C.uint64_t, msg *C.uint8_t, msgLen C.size_t, sig *C.uint8_t, sigLen *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_sign"
	m, good := view(msg, msgLen)
	o := outBuf(sig, sigLen)
	if !good || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	id, found := getIdentity(h)
	if !found {
		return badHandle(fn)
	}
	if rc := sizes(fn, []out{o}, []int{64}); rc != ok {
		return rc
	}
	full := make([]byte, 0, len(signContext)+len(m))
	full = append(append(full, signContext...), m...)
	var s []byte
	var err error
	switch id.Public().(type) {
	case ed25519.PublicKey:
		s, err = id.Sign(rand.Reader, full, crypto.Hash(0))
	case *ecdsa.PublicKey:
		d := sha256.Sum256(full)
		var der []byte
		if der, err = id.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
			s, err = derToRaw(der)
		}
	default:
		err = fmt.Errorf("%w: signing key type", keystore.ErrUnsupportedSuite)
	}
	if err != nil {
		return fail(err, errKeystore)
	}
	if len(s) != 64 {
		return failf(errInternal, "%s: signature of %d bytes", fn, len(s))
	}
	o.put(s)
	return ok
}

// derToRaw converts an ASN.1 ECDSA signature to r || s, 32 bytes each.
func derToRaw(der []byte) ([]byte, error) {
	var r, s []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		len(new(big.Int).SetBytes(r).Bytes()) > 32 || len(new(big.Int).SetBytes(s).Bytes()) > 32 {
		return nil, fmt.Errorf("%w: bad ECDSA signature from signer", keystore.ErrKeystore)
	}
	out := make([]byte, 64)
	new(big.Int).SetBytes(r).FillBytes(out[:32])
	new(big.Int).SetBytes(s).FillBytes(out[32:])
	return out, nil
}

//export lm_verify
func lm_verify(pub *C.uint8_t, pubLen C.size_t, msg *C.uint8_t, msgLen C.size_t, sig *C.uint8_t, sigLen C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_verify"
	k, good1 := view(pub, pubLen)
	m, good2 := view(msg, msgLen)
	s, good3 := view(sig, sigLen)
	if !good1 || !good2 || !good3 || len(s) != 64 || (len(k) != 32 && len(k) != 33) {
		return failf(errInvalidArg, "%s: NULL argument, or key not 32/33 bytes, or signature not 64 bytes", fn)
	}
	full := make([]byte, 0, len(signContext)+len(m))
	full = append(append(full, signContext...), m...)
	valid := false
	if len(k) == 32 {
		valid = ed25519.Verify(ed25519.PublicKey(k), full, s)
	} else {
		x, y := elliptic.UnmarshalCompressed(elliptic.P256(), k)
		if x == nil {
			return failf(errInvalidKey, "%s: not a compressed P-256 point", fn)
		}
		d := sha256.Sum256(full)
		valid = ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, d[:],
			new(big.Int).SetBytes(s[:32]), new(big.Int).SetBytes(s[32:]))
	}
	if !valid {
		return failf(errAuth, "%s: signature does not verify", fn)
	}
	return ok
}

//export lm_identity_close
func lm_identity_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	v, found := release(h, kindIdentity)
	if !found {
		return badHandle("lm_identity_close")
	}
	if err := v.(keystore.Identity).Close(); err != nil {
		return fail(err, errKeystore)
	}
	return ok
}
