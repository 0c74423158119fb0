package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"github.com/loramesh/loramesh-core/core"
)

func getSession(h C.uint64_t) (*core.Session, bool) {
	v, found := lookup(h, kindSession)
	if !found {
		return nil, false
	}
	return v.(*core.Session), true
}

//export lm_encrypt_size
func lm_encrypt_size(n C.size_t) (size C.size_t) {
	defer func() {
		if recover() != nil {
			size = 0
		}
	}()
	if n > maxPayload {
		return 0
	}
	return C.size_t(encryptSize(int(n)))
}

//export lm_session_encrypt
func lm_session_encrypt(h C.uint64_t, pt *C.uint8_t, ptLen C.size_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_session_encrypt"
	p, good := view(pt, ptLen)
	o := outBuf(buf, n)
	if !good || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	if len(p) > maxPayload {
		return failf(errMalformed, "%s: plaintext longer than %d bytes", fn, maxPayload)
	}
	s, found := getSession(h)
	if !found {
		return badHandle(fn)
	}
	// Checked before Encrypt takes a message number.
	need := encryptSize(len(p))
	if rc := sizes(fn, []out{o}, []int{need}); rc != ok {
		return rc
	}
	pkt, err := s.Encrypt(p)
	if err != nil {
		return fail(err, errInternal)
	}
	if len(pkt) != need {
		return failf(errInternal, "%s: packet of %d bytes, computed %d", fn, len(pkt), need)
	}
	o.put(pkt)
	return ok
}

//export lm_session_decrypt
func lm_session_decrypt(h C.uint64_t, pkt *C.uint8_t, pktLen C.size_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_session_decrypt"
	p, good := view(pkt, pktLen)
	o := outBuf(buf, n)
	if !good || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	s, found := getSession(h)
	if !found {
		return badHandle(fn)
	}
	// Decrypt commits on success: size the plaintext first. Packets whose
	// framing does not parse fail in core with nothing changed.
	if k, body, framed := packetBody(p); framed && k == 4 && body >= transportHdr+tagSize {
		if rc := sizes(fn, []out{o}, []int{body - transportHdr - tagSize}); rc != ok {
			return rc
		}
	}
	plain, err := s.Decrypt(p)
	if err != nil {
		return fail(err, errInternal)
	}
	defer core.Wipe(plain)
	if !o.fits(len(plain)) {
		return failf(errInternal, "%s: plaintext larger than computed", fn)
	}
	o.put(plain)
	return ok
}

//export lm_session_peer
func lm_session_peer(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_session_peer"
	o := outBuf(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	s, found := getSession(h)
	if !found {
		return badHandle(fn)
	}
	return simple(fn, o, s.Peer().Bytes())
}

//export lm_session_suite
func lm_session_suite(h C.uint64_t, suite *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_session_suite"
	if suite == nil {
		return failf(errInvalidArg, "%s: NULL suite", fn)
	}
	s, found := getSession(h)
	if !found {
		return badHandle(fn)
	}
	*suite = C.int(s.Suite())
	return ok
}

//export lm_session_handshake_hash
func lm_session_handshake_hash(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_session_handshake_hash"
	o := outBuf(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	s, found := getSession(h)
	if !found {
		return badHandle(fn)
	}
	hh := s.HandshakeHash()
	return simple(fn, o, hh[:])
}

//export lm_session_close
func lm_session_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	v, found := release(h, kindSession)
	if !found {
		return badHandle("lm_session_close")
	}
	v.(*core.Session).Close()
	return ok
}

//export lm_packet_kind
func lm_packet_kind(p *C.uint8_t, n C.size_t, kind *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_packet_kind"
	b, good := view(p, n)
	if !good || kind == nil {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	k, err := core.PacketKind(b)
	if err != nil {
		return fail(err, errMalformed)
	}
	*kind = C.int(k)
	return ok
}
