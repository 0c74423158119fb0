package main

/*
#include <stdint.h>
*/
import "C"

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
)

// kind tags each handle so that a session handle passed where an identity is
// expected is LM_ERR_HANDLE, not a type assertion panic.
type kind uint8

const (
	kindKeystore kind = iota + 1
	kindIdentity
	kindCard
	kindResponder
	kindInitiator
	kindSession
	kindEngine
)

type entry struct {
	k kind
	v any
}

// handles is the table behind every uint64_t handle. Numbers are never
// reused: they count up from a base chosen at the first allocation, random
// in bits 16-47 under a fixed "LM" tag in the top bits, so 0, small integers
// and numbers from another process are not valid handles.
var handles struct {
	mu   sync.Mutex
	m    map[uint64]entry
	next uint64
}

func handleBase() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux (Go 1.24+)
	return 0x4c4d<<48 | binary.LittleEndian.Uint64(b[:])&0x0000_ffff_ffff_0000
}

func newHandle(k kind, v any) C.uint64_t {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	if handles.m == nil {
		handles.m = make(map[uint64]entry)
		handles.next = handleBase()
	}
	handles.next++
	h := handles.next
	handles.m[h] = entry{k, v}
	return C.uint64_t(h)
}

// lookup returns the live object of kind k behind h.
func lookup(h C.uint64_t, k kind) (any, bool) {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	e, found := handles.m[uint64(h)]
	if !found || e.k != k {
		return nil, false
	}
	return e.v, true
}

// release removes h (of kind k) from the table and returns its object; the
// caller closes it. A second release of the same handle finds nothing.
func release(h C.uint64_t, k kind) (any, bool) {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	e, found := handles.m[uint64(h)]
	if !found || e.k != k {
		return nil, false
	}
	delete(handles.m, uint64(h))
	return e.v, true
}

func badHandle(fn string) C.int {
	return failf(errHandle, "%s: unknown, closed or wrong-kind handle", fn)
}

// get returns the object behind h, which must be of kind k and type T.
func get[T any](h C.uint64_t, k kind) (T, bool) {
	v, found := lookup(h, k)
	t, isT := v.(T)
	return t, found && isT
}

// closeHandle releases h (of kind k) and closes its object with close, if
// given. Closing twice gives LM_ERR_HANDLE the second time.
func closeHandle[T any](fn string, h C.uint64_t, k kind, close func(T) error) C.int {
	v, found := release(h, k)
	if !found {
		return badHandle(fn)
	}
	if close != nil {
		if err := close(v.(T)); err != nil {
			return fail(err, errKeystore)
		}
	}
	return ok
}

// getBytes writes what f returns for the object behind h to the caller's
// buffer (output buffer rule).
func getBytes[T any](fn string, h C.uint64_t, k kind, buf *C.uint8_t, n *C.size_t, f func(T) ([]byte, error)) C.int {
	o := outBuf(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	v, found := get[T](h, k)
	if !found {
		return badHandle(fn)
	}
	b, err := f(v)
	if err != nil {
		return fail(err, errInternal)
	}
	return simple(fn, o, b)
}

// getString writes what f returns, NUL terminated, to the caller's buffer.
func getString[T any](fn string, h C.uint64_t, k kind, buf *C.char, n *C.size_t, f func(T) (string, error)) C.int {
	o := outStr(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	v, found := get[T](h, k)
	if !found {
		return badHandle(fn)
	}
	s, err := f(v)
	if err != nil {
		return fail(err, errInternal)
	}
	return simpleString(fn, o, s)
}

// inOut checks an input (p, n) and an output buffer and looks h up: the
// common start of the exports that turn bytes into bytes with an object.
func inOut[T any](fn string, h C.uint64_t, k kind, p *C.uint8_t, n C.size_t, buf *C.uint8_t, bn *C.size_t) (T, []byte, out, C.int) {
	var zero T
	in, good := view(p, n)
	o := outBuf(buf, bn)
	if !good || !o.valid() {
		return zero, nil, o, failf(errInvalidArg, "%s: NULL argument", fn)
	}
	v, found := get[T](h, k)
	if !found {
		return zero, nil, o, badHandle(fn)
	}
	return v, in, o, ok
}
