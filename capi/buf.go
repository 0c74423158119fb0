package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/loramesh/loramesh-core/internal/secret"
)

// maxInput bounds any input length, so a garbage length cannot make the
// library read (or copy) gigabytes of the caller's address space.
const maxInput = 1 << 26

// view returns the caller's n bytes at p without copying, for inputs the Go
// side reads during the call and does not keep (plaintexts, packets, keys:
// no unwiped Go copy of a plaintext is made). ok is false for NULL with
// n > 0 or an absurd n.
func view(p *C.uint8_t, n C.size_t) ([]byte, bool) {
	if n == 0 {
		return []byte{}, true
	}
	if p == nil || n > maxInput {
		return nil, false
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)), true
}

// goBytes is a Go copy of the input, for inputs that are kept (cards).
func goBytes(p *C.uint8_t, n C.size_t) ([]byte, bool) {
	v, good := view(p, n)
	if !good {
		return nil, false
	}
	return append([]byte(nil), v...), true
}

// goString copies a NUL-terminated input string (nil pointer: ok false).
func goString(s *C.char) (string, bool) {
	if s == nil {
		return "", false
	}
	return C.GoString(s), true
}

// out is one caller output buffer under the output buffer rule.
type out struct {
	p *C.uint8_t
	n *C.size_t
}

// valid: the length pointer is set, and the buffer is set if it has capacity.
func (o out) valid() bool { return o.n != nil && (o.p != nil || *o.n == 0) }

func (o out) fits(need int) bool { return int(*o.n) >= need }

// put copies b out (the caller checked it fits) and reports its length.
func (o out) put(b []byte) {
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(o.p)), len(b)), b)
	}
	*o.n = C.size_t(len(b))
}

// putString copies s and a NUL out.
func (o out) putString(s string) {
	dst := unsafe.Slice((*byte)(unsafe.Pointer(o.p)), len(s)+1)
	copy(dst, s)
	dst[len(s)] = 0
	*o.n = C.size_t(len(s) + 1)
}

func outBuf(p *C.uint8_t, n *C.size_t) out { return out{p, n} }
func outStr(p *C.char, n *C.size_t) out    { return out{(*C.uint8_t)(unsafe.Pointer(p)), n} }

// sizes checks every output against its needed size. If any is too small,
// it sets each length to its need and returns LM_ERR_BUFFER_TOO_SMALL,
// having written nothing else; otherwise ok.
func sizes(fn string, outs []out, needs []int) C.int {
	short := false
	for i, o := range outs {
		if !o.fits(needs[i]) {
			short = true
		}
	}
	if !short {
		return ok
	}
	for i, o := range outs {
		*o.n = C.size_t(needs[i])
	}
	return failf(errBufferTooSmall, "%s: output buffer too small", fn)
}

// simple writes b to o, or reports the size needed.
func simple(fn string, o out, b []byte) C.int {
	if rc := sizes(fn, []out{o}, []int{len(b)}); rc != ok {
		return rc
	}
	o.put(b)
	return ok
}

// simpleString writes s and a NUL to o, or reports the size needed.
func simpleString(fn string, o out, s string) C.int {
	if rc := sizes(fn, []out{o}, []int{len(s) + 1}); rc != ok {
		return rc
	}
	o.putString(s)
	return ok
}

// The C ABI's payload limits (LM_MAX_PAYLOAD, LM_MAX_INIT_PAYLOAD): one
// bound for every suite, below each of core's per-suite limits
// (TestLimitsWithinCore), so C callers need no suite arithmetic.
const (
	maxPayload     = 65535 - 64
	maxInitPayload = 65535 - 2*33 - 2*16
)

// lockedInput copies a caller's secret into locked pages of its own; the
// caller frees it. Go-side code reads it through Bytes(); nothing else holds
// the caller's pointer.
func lockedInput(p *C.uint8_t, n C.size_t) (*secret.Buffer, error) {
	src, good := view(p, n)
	if !good {
		return nil, errors.New("NULL secret or bad length")
	}
	return secret.NewBuffer(src)
}
