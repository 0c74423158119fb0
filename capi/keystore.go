package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"strings"

	"github.com/loramesh/loramesh-core/internal/files"
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
		p = &memory.Params{Time: uint32(argonTime), Memory: uint32(argonMemory), Threads: uint8(argonThreads)}
		if err := p.Check(); err != nil {
			return failf(errInvalidArg, "%s: %v", fn, err)
		}
	}
	pw, err := lockedInput(pass, passLen)
	if err != nil {
		return fail(err, errInvalidArg)
	}
	defer pw.Free()
	k, err := memory.Open(d, pw.Bytes(), p)
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
	p, err := lockedInput(pin, pinLen)
	if err != nil {
		return fail(err, errInvalidArg)
	}
	defer p.Free()
	// pkcs11 copies the PIN into its own locked memory; nil means the URI's.
	k, err := pkcs11.OpenURI(u, p.Bytes())
	if err != nil {
		return fail(err, errKeystore)
	}
	*ks = newHandle(kindKeystore, &ksEntry{ks: k})
	return ok
}

func nameArg(fn string, name *C.char) (string, C.int) {
	n, good := goString(name)
	if !good || files.CheckName(n) != nil {
		return "", failf(errInvalidArg, "%s: NULL or invalid identity name", fn)
	}
	return n, ok
}

//export lm_keystore_list
func lm_keystore_list(h C.uint64_t, buf *C.char, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	return getString("lm_keystore_list", h, kindKeystore, buf, n, func(e *ksEntry) (string, error) {
		names, err := e.ks.List()
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, s := range names {
			b.WriteString(s)
			b.WriteByte('\n')
		}
		return b.String(), nil
	})
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
	e, found := get[*ksEntry](h, kindKeystore)
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
	e, found := get[*ksEntry](h, kindKeystore)
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
	e, found := get[*ksEntry](h, kindKeystore)
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
	return closeHandle("lm_keystore_close", h, kindKeystore, func(e *ksEntry) error {
		err := e.ks.Close()
		if e.free != nil {
			e.free()
		}
		return err
	})
}
