package main

/*
#include <stdint.h>
#include <stddef.h>
#include "internal.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/pkcs11"
	"github.com/loramesh/loramesh-core/keystore/tpm"
)

// cInt lets the tests (which cannot use cgo) name the code type.
type cInt = C.int

// Error codes: the lm_error enum of loramesh.h (TestCodesMatchHeader).
const (
	ok                C.int = 0
	errInvalidArg     C.int = 1
	errBufferTooSmall C.int = 2
	errAuth           C.int = 3
	errReplay         C.int = 4
	errMalformed      C.int = 5
	errLimit          C.int = 6
	errUnsupported    C.int = 7
	errKeystore       C.int = 8
	errPIN            C.int = 9
	errLocked         C.int = 10
	errNotFound       C.int = 11
	errExists         C.int = 12
	errHandle         C.int = 13
	errLockedMemory   C.int = 14
	errUnknownPeer    C.int = 15
	errTooOld         C.int = 16
	errState          C.int = 17
	errBadCard        C.int = 18
	errVersion        C.int = 19
	errInvalidKey     C.int = 20
	errInternal       C.int = 21
	errInUse          C.int = 22
	errKeyChanged     C.int = 23
	errConflict       C.int = 24
	errFull           C.int = 25
	numCodes                = 26
)

var codeNames = [numCodes]string{
	ok:                "success",
	errInvalidArg:     "invalid argument",
	errBufferTooSmall: "output buffer too small",
	errAuth:           "authentication failed",
	errReplay:         "replayed message",
	errMalformed:      "malformed input",
	errLimit:          "message limit reached",
	errUnsupported:    "unsupported suite or operation",
	errKeystore:       "keystore failure",
	errPIN:            "wrong PIN, passphrase or auth value",
	errLocked:         "PIN or key locked out",
	errNotFound:       "not found",
	errExists:         "already exists",
	errHandle:         "invalid handle",
	errLockedMemory:   "cannot lock memory",
	errUnknownPeer:    "unknown peer",
	errTooOld:         "message outside the receive window",
	errState:          "used out of order or after close",
	errBadCard:        "invalid contact card",
	errVersion:        "unsupported version or packet kind",
	errInvalidKey:     "invalid public key",
	errInternal:       "internal error",
	errInUse:          "in use by another process",
	errKeyChanged:     "contact's key changed",
	errConflict:       "key belongs to another contact or to this node",
	errFull:           "queue full",
}

// errorStrings are C copies of codeNames, made on first use and never freed.
var errorStrings = sync.OnceValue(func() []*C.char {
	s := make([]*C.char, numCodes+1)
	for i, n := range codeNames {
		s[i] = C.CString(n)
	}
	s[numCodes] = C.CString("unknown error")
	return s
})

//export lm_strerror
func lm_strerror(code C.int) (s *C.char) {
	defer func() {
		if recover() != nil {
			s = nil
		}
	}()
	t := errorStrings()
	if code < 0 || code >= numCodes {
		return t[numCodes]
	}
	return t[code]
}

//export lm_last_error
func lm_last_error(buf *C.char, n *C.size_t) (rc C.int) {
	defer func() {
		if recover() != nil {
			rc = errInternal
		}
	}()
	if n == nil || (buf == nil && *n != 0) {
		return errInvalidArg
	}
	need := C.lm__error_len() + 1
	if *n < need {
		*n = need
		return errBufferTooSmall
	}
	C.lm__error_copy(buf)
	*n = need
	return ok
}

// setError records msg as the calling thread's last error.
func setError(msg string) {
	if len(msg) == 0 {
		C.lm__set_error(nil, 0)
		return
	}
	b := []byte(msg)
	C.lm__set_error((*C.char)(unsafe.Pointer(&b[0])), C.size_t(len(b)))
}

// failf records a message and returns code.
func failf(code C.int, format string, args ...any) C.int {
	setError(fmt.Sprintf(format, args...))
	return code
}

// fail records err's message (core and keystore messages hold no secrets
// and nothing a peer sent) and returns the code errors.Is finds, or def.
func fail(err error, def C.int) C.int {
	setError(err.Error())
	return codeOf(err, def)
}

// codeOf maps Go sentinels to codes. Order matters where errors wrap
// several sentinels (a bad card wraps ErrMalformed; pkcs11 errors wrap
// keystore ones).
func codeOf(err error, def C.int) C.int {
	if code, found := engineCode(err); found {
		return code
	}
	switch {
	case err == nil:
		return ok
	case errors.Is(err, core.ErrLockedMemory):
		return errLockedMemory
	case errors.Is(err, core.ErrBadCard):
		return errBadCard
	case errors.Is(err, core.ErrAuth):
		return errAuth
	case errors.Is(err, core.ErrReplay):
		return errReplay
	case errors.Is(err, core.ErrLimit):
		return errLimit
	case errors.Is(err, core.ErrTooOld):
		return errTooOld
	case errors.Is(err, core.ErrUnknownPeer):
		return errUnknownPeer
	case errors.Is(err, core.ErrState), errors.Is(err, keystore.ErrClosed):
		return errState
	case errors.Is(err, core.ErrVersion):
		return errVersion
	case errors.Is(err, core.ErrMalformed):
		return errMalformed
	case errors.Is(err, keystore.ErrWrongPIN):
		return errPIN
	case errors.Is(err, keystore.ErrLockedOut):
		return errLocked
	case errors.Is(err, keystore.ErrNotFound):
		return errNotFound
	case errors.Is(err, keystore.ErrExists):
		return errExists
	case errors.Is(err, keystore.ErrUnsupportedSuite):
		return errUnsupported
	case errors.Is(err, keystore.ErrInvalidPublicKey):
		return errInvalidKey
	case errors.Is(err, pkcs11.ErrURI), errors.Is(err, keystore.ErrInvalidName), errors.Is(err, core.ErrBadName):
		return errInvalidArg
	case errors.Is(err, tpm.ErrNoDevice):
		return errNotFound
	case errors.Is(err, keystore.ErrKeystore):
		return errKeystore
	}
	return def
}

// guard is deferred first in every export: a panic becomes LM_ERR_INTERNAL
// (the host process never aborts), and success clears the thread's message.
func guard(rc *C.int) {
	if r := recover(); r != nil {
		msg := "internal error: recovered from a panic"
		if re, isRT := r.(runtime.Error); isRT {
			msg += ": " + re.Error()
		}
		setError(msg)
		*rc = errInternal
		return
	}
	if *rc == ok {
		setError("")
	}
}
