package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/secret"
)

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
	return C.size_t(core.EncryptedSize(int(n)))
}

//export lm_session_encrypt
func lm_session_encrypt(h C.uint64_t, pt *C.uint8_t, ptLen C.size_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_session_encrypt"
	s, p, o, rc := inOut[*core.Session](fn, h, kindSession, pt, ptLen, buf, n)
	if rc != ok {
		return rc
	}
	if len(p) > maxPayload {
		return failf(errMalformed, "%s: plaintext longer than %d bytes", fn, maxPayload)
	}
	// Checked before Encrypt takes a message number.
	need := core.EncryptedSize(len(p))
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
	s, p, o, rc := inOut[*core.Session](fn, h, kindSession, pkt, pktLen, buf, n)
	if rc != ok {
		return rc
	}
	// Decrypt commits on success: size the plaintext first. Packets whose
	// framing does not parse fail in core with nothing changed.
	if k, _ := core.PacketKind(p); k == core.KindTransport {
		if need, framed := core.PayloadSize(p, s.Suite()); framed {
			if rc := sizes(fn, []out{o}, []int{need}); rc != ok {
				return rc
			}
		}
	}
	plain, err := s.Decrypt(p)
	if err != nil {
		return fail(err, errInternal)
	}
	defer secret.Wipe(plain)
	if !o.fits(len(plain)) {
		return failf(errInternal, "%s: plaintext larger than computed", fn)
	}
	o.put(plain)
	return ok
}

//export lm_session_peer
func lm_session_peer(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	return getBytes("lm_session_peer", h, kindSession, buf, n, func(s *core.Session) ([]byte, error) {
		return s.Peer().Bytes(), nil
	})
}

//export lm_session_suite
func lm_session_suite(h C.uint64_t, suite *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_session_suite"
	if suite == nil {
		return failf(errInvalidArg, "%s: NULL suite", fn)
	}
	s, found := get[*core.Session](h, kindSession)
	if !found {
		return badHandle(fn)
	}
	*suite = C.int(s.Suite())
	return ok
}

//export lm_session_handshake_hash
func lm_session_handshake_hash(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	return getBytes("lm_session_handshake_hash", h, kindSession, buf, n, func(s *core.Session) ([]byte, error) {
		hh := s.HandshakeHash()
		return hh[:], nil
	})
}

//export lm_session_close
func lm_session_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	return closeHandle("lm_session_close", h, kindSession, func(s *core.Session) error { s.Close(); return nil })
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
