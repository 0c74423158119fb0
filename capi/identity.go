package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"fmt"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

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
	s, err := lockedInput(seed, n)
	if err != nil {
		return fail(err, errInvalidArg)
	}
	defer s.Free()
	ident, err := memory.FromSeed(s.Bytes())
	if err != nil {
		return fail(err, errKeystore)
	}
	*id = newHandle(kindIdentity, ident)
	return ok
}

//export lm_identity_public_key
func lm_identity_public_key(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	return getBytes("lm_identity_public_key", h, kindIdentity, buf, n, func(id keystore.Identity) ([]byte, error) {
		k, err := core.SigningKeyOf(id)
		return k.Bytes(), err
	})
}

//export lm_identity_x25519_public
func lm_identity_x25519_public(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_x25519_public"
	return getBytes(fn, h, kindIdentity, buf, n, func(id keystore.Identity) ([]byte, error) {
		m, isMem := id.(*memory.Identity)
		if !isMem {
			return nil, fmt.Errorf("%s: not a software identity: %w", fn, keystore.ErrUnsupportedSuite)
		}
		return m.DeriveX25519().Bytes(), nil
	})
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
	s, good := suiteArg(suite)
	if !good {
		return failf(errInvalidArg, "%s: unknown suite", fn)
	}
	return getBytes(fn, h, kindIdentity, buf, n, func(id keystore.Identity) ([]byte, error) {
		k, err := id.DHPublic(s)
		return k.Bytes(), err
	})
}

//export lm_identity_suites
func lm_identity_suites(h C.uint64_t, mask *C.uint32_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_identity_suites"
	if mask == nil {
		return failf(errInvalidArg, "%s: NULL mask", fn)
	}
	id, found := get[keystore.Identity](h, kindIdentity)
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
	id, m, o, rc := inOut[keystore.Identity](fn, h, kindIdentity, msg, msgLen, sig, sigLen)
	if rc != ok {
		return rc
	}
	if rc := sizes(fn, []out{o}, []int{core.SignatureSize}); rc != ok {
		return rc
	}
	s, err := core.SignMessage(id, m)
	if err != nil {
		return fail(err, errKeystore)
	}
	o.put(s)
	return ok
}

//export lm_verify
func lm_verify(pub *C.uint8_t, pubLen C.size_t, msg *C.uint8_t, msgLen C.size_t, sig *C.uint8_t, sigLen C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_verify"
	k, good1 := view(pub, pubLen)
	m, good2 := view(msg, msgLen)
	s, good3 := view(sig, sigLen)
	if !good1 || !good2 || !good3 || len(s) != core.SignatureSize || (len(k) != 32 && len(k) != 33) {
		return failf(errInvalidArg, "%s: NULL argument, or key not 32/33 bytes, or signature not 64 bytes", fn)
	}
	key, err := core.ParseSigningKey(k)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fn, err), errInvalidKey)
	}
	if err := key.VerifyMessage(m, s); err != nil {
		return fail(fmt.Errorf("%s: signature does not verify: %w", fn, core.ErrAuth), errAuth)
	}
	return ok
}

//export lm_identity_close
func lm_identity_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	return closeHandle("lm_identity_close", h, kindIdentity, keystore.Identity.Close)
}
