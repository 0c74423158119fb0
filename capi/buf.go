package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/loramesh/loramesh-core/core"
	"golang.org/x/sys/unix"
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

// Wire sizes. A packet is the canonical CBOR array [kind, body] with kind
// below 24 (docs/PROTOCOL.md): 0x82, kind, a byte-string header, body.
const (
	tagSize    = 16 // ChaCha20-Poly1305
	maxPayload = 65535 - 64
	// maxInitPayload keeps message 1 within Noise's 65535 bytes in both
	// suites: 2*33 (e, s) + 2*16 (tags) + payload. core.Initiate accepts up
	// to maxPayload, but its own Respond refuses the resulting packets as
	// too long (reported as a core bug).
	maxInitPayload = 65535 - 2*33 - 2*tagSize
	transportHdr   = 2 // truncated message number
)

func bstrHeader(n int) int {
	switch {
	case n < 24:
		return 1
	case n < 1<<8:
		return 2
	case n < 1<<16:
		return 3
	}
	return 5
}

func packetSize(body int) int { return 2 + bstrHeader(body) + body }

// packetBody parses the framing of a canonical packet: its kind and body
// length. It only sizes outputs; core decodes strictly.
func packetBody(p []byte) (k int, body int, good bool) {
	if len(p) < 3 || p[0] != 0x82 || p[1] >= 24 || p[2]>>5 != 2 {
		return 0, 0, false
	}
	ai, h := int(p[2]&31), 1
	switch {
	case ai < 24:
		body = ai
	case ai == 24 && len(p) >= 4:
		body, h = int(p[3]), 2
	case ai == 25 && len(p) >= 5:
		body, h = int(binary.BigEndian.Uint16(p[3:])), 3
	case ai == 26 && len(p) >= 7:
		body, h = int(binary.BigEndian.Uint32(p[3:])), 5
	default:
		return 0, 0, false
	}
	if 2+h+body != len(p) {
		return 0, 0, false
	}
	return int(p[1]), body, true
}

// encryptSize is the exact transport packet size for n bytes of plaintext.
func encryptSize(n int) int { return packetSize(transportHdr + n + tagSize) }

// locked is a copy of a caller's secret in an mlocked, MADV_DONTDUMP page
// of its own, wiped and unmapped by free. Go-side code reads it through
// bytes(); nothing else holds the caller's pointer.
type locked struct {
	mem []byte
	n   int
}

func newLocked(p *C.uint8_t, n C.size_t) (*locked, error) {
	src, good := view(p, n)
	if !good {
		return nil, fmt.Errorf("NULL secret or bad length")
	}
	if n == 0 {
		return &locked{}, nil
	}
	pg := unix.Getpagesize()
	size := (int(n) + pg - 1) / pg * pg
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap: %v", core.ErrLockedMemory, err)
	}
	if err := unix.Mlock(mem); err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("%w: mlock: %v", core.ErrLockedMemory, err)
	}
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	copy(mem, src)
	return &locked{mem: mem, n: int(n)}, nil
}

// bytes is the secret, or nil when empty.
func (l *locked) bytes() []byte {
	if l.n == 0 {
		return nil
	}
	return l.mem[:l.n]
}

func (l *locked) free() {
	if l == nil || l.mem == nil {
		return
	}
	core.Wipe(l.mem)
	_ = unix.Munlock(l.mem)
	_ = unix.Munmap(l.mem)
	l.mem, l.n = nil, 0
}
