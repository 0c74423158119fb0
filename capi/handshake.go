package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

type initiator struct {
	in    *core.Initiator
	suite keystore.Suite
}

func publicKeyArg(suite C.int, p *C.uint8_t, n C.size_t) (keystore.PublicKey, C.int) {
	s, good := suiteArg(suite)
	b, good2 := view(p, n)
	if !good || !good2 || len(b) != s.PublicKeySize() {
		return keystore.PublicKey{}, errInvalidArg
	}
	k, err := keystore.ParsePublicKey(s, b)
	if err != nil {
		return k, errInvalidKey
	}
	return k, ok
}

//export lm_initiate
func lm_initiate(h C.uint64_t, suite C.int, peer *C.uint8_t, peerLen C.size_t,
	payload *C.uint8_t, payloadLen C.size_t, ini *C.uint64_t, msg1 *C.uint8_t, msg1Len *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_initiate"
	rs, rc := publicKeyArg(suite, peer, peerLen)
	if rc != ok {
		return failf(rc, "%s: unknown suite, NULL key, key of the wrong length or not a valid point", fn)
	}
	pl, good := view(payload, payloadLen)
	o := outBuf(msg1, msg1Len)
	if !good || ini == nil || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	if len(pl) > maxInitPayload {
		return failf(errMalformed, "%s: payload longer than %d bytes", fn, maxInitPayload)
	}
	id, found := get[keystore.Identity](h, kindIdentity)
	if !found {
		return badHandle(fn)
	}
	if rc := sizes(fn, []out{o}, []int{core.InitSize(rs.Suite(), len(pl))}); rc != ok {
		return rc
	}
	in, m, err := core.Initiate(id, rs, pl, nil)
	if err != nil {
		return fail(err, errInternal)
	}
	if !o.fits(len(m)) {
		in.Close()
		return failf(errInternal, "%s: message 1 larger than computed", fn)
	}
	o.put(m)
	*ini = newHandle(kindInitiator, &initiator{in, rs.Suite()})
	return ok
}

//export lm_finish
func lm_finish(h C.uint64_t, msg2 *C.uint8_t, msg2Len C.size_t, sess *C.uint64_t,
	payload *C.uint8_t, payloadLen *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_finish"
	m, good := view(msg2, msg2Len)
	o := outBuf(payload, payloadLen)
	if !good || sess == nil || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	in, found := get[*initiator](h, kindInitiator)
	if !found {
		return badHandle(fn)
	}
	// Finish spends the initiator: size the payload first. A packet whose
	// framing does not parse fails in core with nothing changed.
	if k, _ := core.PacketKind(m); k == core.KindResponse {
		if need, framed := core.PayloadSize(m, in.suite); framed {
			if rc := sizes(fn, []out{o}, []int{need}); rc != ok {
				return rc
			}
		}
	}
	s, pl, err := in.in.Finish(m)
	if err != nil {
		return fail(err, errInternal)
	}
	defer secret.Wipe(pl)
	if !o.fits(len(pl)) {
		s.Close()
		return failf(errInternal, "%s: payload larger than computed", fn)
	}
	o.put(pl)
	*sess = newHandle(kindSession, s)
	return ok
}

//export lm_initiator_close
func lm_initiator_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	return closeHandle("lm_initiator_close", h, kindInitiator, func(in *initiator) error { in.in.Close(); return nil })
}

//export lm_responder_new
func lm_responder_new(h C.uint64_t, r *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_responder_new"
	if r == nil {
		return failf(errInvalidArg, "%s: NULL responder", fn)
	}
	id, found := get[keystore.Identity](h, kindIdentity)
	if !found {
		return badHandle(fn)
	}
	*r = newHandle(kindResponder, core.NewResponder(id, nil))
	return ok
}

//export lm_responder_allow
func lm_responder_allow(h C.uint64_t, suite C.int, key *C.uint8_t, keyLen C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_responder_allow"
	k, rc := publicKeyArg(suite, key, keyLen)
	if rc != ok {
		return failf(rc, "%s: unknown suite, NULL key, key of the wrong length or not a valid point", fn)
	}
	r, found := get[*core.Responder](h, kindResponder)
	if !found {
		return badHandle(fn)
	}
	r.Allow(k)
	return ok
}

//export lm_respond
func lm_respond(h C.uint64_t, msg1 *C.uint8_t, msg1Len C.size_t, reply *C.uint8_t, replyLen C.size_t,
	sess *C.uint64_t, peer *C.uint8_t, peerLen *C.size_t, payload *C.uint8_t, payloadLen *C.size_t,
	msg2 *C.uint8_t, msg2Len *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_respond"
	m, good := view(msg1, msg1Len)
	rp, good2 := view(reply, replyLen)
	outs := []out{outBuf(peer, peerLen), outBuf(payload, payloadLen), outBuf(msg2, msg2Len)}
	if !good || !good2 || sess == nil || !outs[0].valid() || !outs[1].valid() || !outs[2].valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	if len(rp) > maxPayload {
		return failf(errMalformed, "%s: reply longer than %d bytes", fn, maxPayload)
	}
	r, found := get[*core.Responder](h, kindResponder)
	if !found {
		return badHandle(fn)
	}
	// A successful Respond remembers msg1 (a retry would be a replay), so
	// every output is sized before. Packets whose framing does not parse
	// fail in core with nothing changed.
	k, _ := core.PacketKind(m)
	if suite, isInit := k.InitSuite(); isInit {
		if pl, framed := core.PayloadSize(m, suite); framed {
			needs := []int{suite.PublicKeySize(), pl, core.ResponseSize(suite, len(rp))}
			if rc := sizes(fn, outs, needs); rc != ok {
				return rc
			}
		}
	}
	s, pl, m2, err := r.Respond(m, rp)
	if err != nil {
		return fail(err, errInternal)
	}
	defer secret.Wipe(pl)
	pk := s.Peer().Bytes()
	if !outs[0].fits(len(pk)) || !outs[1].fits(len(pl)) || !outs[2].fits(len(m2)) {
		s.Close()
		return failf(errInternal, "%s: output larger than computed", fn)
	}
	outs[0].put(pk)
	outs[1].put(pl)
	outs[2].put(m2)
	*sess = newHandle(kindSession, s)
	return ok
}

//export lm_responder_close
func lm_responder_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	return closeHandle[*core.Responder]("lm_responder_close", h, kindResponder, nil)
}
