package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"strings"

	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/keystore/pkcs11"
)

// ksEntry is a keystore handle's object.
type ksEntry struct {
	ks   keystore.Keystore
	free func() // releases secrets kept for the keystore's lifetime (TPM auth)
}

//export lm_keystore_open_memory
func lm_keystore_open_memory(dir *C.char, pass *C.uint8_t, passLen C.size_t,
	argonTime, argonMemory C.uint32_t, argonThreads C.uint8_t, ks *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_keystore_open_memory"
	d, good := goString(dir)
	if !good || d == "" || ks == nil || passLen == 0 {
		return failf(errInvalidArg, "%s: NULL or empty argument", fn)
	}
	var p *memory.Params
	if argonTime != 0 || argonMemory != 0 || argonThreads != 0 {
		// The bounds memory.Load enforces, so every file written can be read.
		if argonTime < 1 || argonTime > 16 || argonThreads < 1 ||
			uint32(argonMemory) < 8*uint32(argonThreads) || argonMemory > 1<<20 {
			return failf(errInvalidArg, "%s: argon2id parameters out of range", fn)
		}
		p = &memory.Params{Time: uint32(argonTime), Memory: uint32(argonMemory), Threads: uint8(argonThreads)}
	}
	pw, err := newLocked(pass, passLen)
	if err != nil {
		return fail(err, errInvalidArg)
	}
	defer pw.free()
	k, err := memory.Open(d, pw.bytes(), p)
	if err != nil {
		return fail(err, errKeystore)
	}
	*ks = newHandle(kindKeystore, &ksEntry{ks: k})
	return ok
}

//export lm_keystore_open_pkcs11
func lm_keystore_open_pkcs11(uri *C.char, pin *C.uint8_t, pinLen C.size_t, ks *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_keystore_open_pkcs11"
	u, good := goString(uri)
	if !good || ks == nil {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	p, err := newLocked(pin, pinLen)
	if err != nil {
		return fail(err, errInvalidArg)
	}
	defer p.free()
	// pkcs11 copies the PIN into its own locked memory; nil means the URI's.
	k, err := pkcs11.OpenURI(u, p.bytes())
	if err != nil {
		return fail(err, errKeystore)
	}
	*ks = newHandle(kindKeystore, &ksEntry{ks: k})
	return ok
}

func getKeystore(h C.uint64_t) (*ksEntry, bool) {
	v, found := lookup(h, kindKeystore)
	if !found {
		return nil, false
	}
	return v.(*ksEntry), true
}

// validName is the identity name rule every backend accepts.
func validName(n string) bool {
	if n == "" || len(n) > 64 || n[0] == '.' || n[0] == '-' {
		return false
	}
	for _, c := range []byte(n) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func nameArg(fn string, name *C.char) (string, C.int) {
	n, good := goString(name)
	if !good || !validName(n) {
		return "", failf(errInvalidArg, "%s: NULL or invalid identity name", fn)
	}
	return n, ok
}

//export lm_keystore_list
func lm_keystore_list(h C.uint64_t, buf *C.char, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_keystore_list"
	o := outStr(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	e, found := getKeystore(h)
	if !found {
		return badHandle(fn)
	}
	names, err := e.ks.List()
	if err != nil {
		return fail(err, errKeystore)
	}
	var b strings.Builder
	for _, s := range names {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return simpleString(fn, o, b.String())
}

// suitesOf turns a suite mask into suites; ok false for unknown bits.
func suitesOf(mask C.uint32_t) ([]keystore.Suite, bool) {
	var s []keystore.Suite
	for _, x := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if mask&(1<<x) != 0 {
			s = append(s, x)
			mask &^= 1 << x
		}
	}
	return s, mask == 0
}

//export lm_keystore_generate
func lm_keystore_generate(h C.uint64_t, name *C.char, mask C.uint32_t, id *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_keystore_generate"
	n, rc := nameArg(fn, name)
	if rc != ok {
		return rc
	}
	suites, good := suitesOf(mask)
	if !good || id == nil {
		return failf(errInvalidArg, "%s: NULL identity or unknown suite bits", fn)
	}
	e, found := getKeystore(h)
	if !found {
		return badHandle(fn)
	}
	ident, err := e.ks.Generate(n, suites...)
	if err != nil {
		return fail(err, errKeystore)
	}
	*id = newHandle(kindIdentity, ident)
	return ok
}

//export lm_keystore_load
func lm_keystore_load(h C.uint64_t, name *C.char, id *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_keystore_load"
	n, rc := nameArg(fn, name)
	if rc != ok {
		return rc
	}
	if id == nil {
		return failf(errInvalidArg, "%s: NULL identity", fn)
	}
	e, found := getKeystore(h)
	if !found {
		return badHandle(fn)
	}
	ident, err := e.ks.Open(n)
	if err != nil {
		return fail(err, errKeystore)
	}
	*id = newHandle(kindIdentity, ident)
	return ok
}

//export lm_keystore_delete
func lm_keystore_delete(h C.uint64_t, name *C.char) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_keystore_delete"
	n, rc := nameArg(fn, name)
	if rc != ok {
		return rc
	}
	e, found := getKeystore(h)
	if !found {
		return badHandle(fn)
	}
	if err := e.ks.Delete(n); err != nil {
		return fail(err, errKeystore)
	}
	return ok
}

//export lm_keystore_close
func lm_keystore_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	v, found := release(h, kindKeystore)
	if !found {
		return badHandle("lm_keystore_close")
	}
	e := v.(*ksEntry)
	err := e.ks.Close()
	if e.free != nil {
		e.free()
	}
	if err != nil {
		return fail(err, errKeystore)
	}
	return ok
}
