// Command capi is libloramesh, the C ABI of loramesh-core, built with
//
//	go build -buildmode=c-shared -o build/libloramesh.so ./capi
//
// The contract is the hand-written capi/loramesh.h; cgo's generated header is
// not installed. The rules at the boundary (integer handles, integer codes,
// one output-buffer rule, secrets copied to locked memory, a recover in every
// export, nothing done at load) are documented there and enforced here.
//
// This package has no init function and no package-level state that is set
// up at load: the handle table, the version string and the error strings are
// created on first use.
package main

/*
#include <stdint.h>
#include <stddef.h>
#include "internal.h"
*/
import "C"

import (
	"sync"
	"unsafe"

	"github.com/loramesh/loramesh-core/core"
)

// Version is the library version lm_version reports.
const Version = "0.1.0"

// abiVersion must equal LM_ABI_VERSION in loramesh.h (checked by capi's tests).
const abiVersion = 2

func main() {}

var versionOnce = sync.OnceValue(func() *C.char { return C.CString(Version) })

//export lm_version
func lm_version() (s *C.char) {
	defer func() {
		if recover() != nil {
			s = nil
		}
	}()
	return versionOnce()
}

//export lm_abi_version
func lm_abi_version() (v C.int) {
	defer func() { _ = recover() }()
	return abiVersion
}

//export lm_secure_wipe
func lm_secure_wipe(buf unsafe.Pointer, n C.size_t) {
	defer func() { _ = recover() }()
	C.lm__wipe(buf, n) // in C: the compiler may not drop it
}

//export lm_locked_memory
func lm_locked_memory(locked, inUse *C.size_t) (rc C.int) {
	defer guard(&rc)
	if locked == nil || inUse == nil {
		return failf(errInvalidArg, "lm_locked_memory: NULL argument")
	}
	l, u := core.LockedMemory()
	*locked, *inUse = C.size_t(l), C.size_t(u)
	return ok
}
