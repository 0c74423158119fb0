package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"errors"
	"fmt"

	"github.com/loramesh/loramesh-core/internal/seal"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// hostPurpose is the sealing purpose of a host's purpose: a namespace of
// its own, so nothing a host seals opens as one of the library's files
// (the engine's "state") and lm_unseal cannot open those.
func hostPurpose(fn string, p *C.char) (string, C.int) {
	s, good := goString(p)
	if !good || len(s) == 0 || len(s) > 64 {
		return "", failf(errInvalidArg, "%s: purpose must be 1-64 bytes of [a-z0-9._-]", fn)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", failf(errInvalidArg, "%s: purpose must be 1-64 bytes of [a-z0-9._-]", fn)
		}
	}
	return "host/" + s, ok
}

//export lm_seal
func lm_seal(h C.uint64_t, purpose *C.char, data *C.uint8_t, dataLen C.size_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_seal"
	p, rc := hostPurpose(fn, purpose)
	if rc != ok {
		return rc
	}
	id, pt, o, rc := inOut[keystore.Identity](fn, h, kindIdentity, data, dataLen, buf, n)
	if rc != ok {
		return rc
	}
	pub, err := id.DHPublic(seal.Suite(id))
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fn, err), errUnsupported)
	}
	need, err := seal.Size(pub.Suite(), len(pt))
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fn, err), errUnsupported)
	}
	if rc := sizes(fn, []out{o}, []int{need}); rc != ok {
		return rc
	}
	b, err := seal.Seal(pub, p, pt)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fn, err), errInternal)
	}
	o.put(b)
	return ok
}

//export lm_unseal
func lm_unseal(h C.uint64_t, purpose *C.char, sealed *C.uint8_t, sealedLen C.size_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_unseal"
	p, rc := hostPurpose(fn, purpose)
	if rc != ok {
		return rc
	}
	id, in, o, rc := inOut[keystore.Identity](fn, h, kindIdentity, sealed, sealedLen, buf, n)
	if rc != ok {
		return rc
	}
	need, err := seal.OpenedSize(in)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fn, err), errMalformed)
	}
	if rc := sizes(fn, []out{o}, []int{need}); rc != ok {
		return rc // before the identity's DH: sizing costs no token operation
	}
	pt, err := seal.Open(id, p, in)
	switch {
	case errors.Is(err, seal.ErrOpen):
		return fail(fmt.Errorf("%s: %w", fn, err), errAuth)
	case errors.Is(err, seal.ErrFormat), errors.Is(err, seal.ErrNotSealed):
		return fail(fmt.Errorf("%s: %w", fn, err), errMalformed)
	case err != nil:
		return fail(fmt.Errorf("%s: %w", fn, err), errKeystore)
	}
	// pt is Go heap memory: wiped once copied out, though the runtime
	// may have moved or copied it before (as for every plaintext output).
	defer secret.Wipe(pt)
	o.put(pt)
	return ok
}
