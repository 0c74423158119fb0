package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"

	"github.com/loramesh/loramesh-core/core"
)

// maxCard bounds card input: a card is one packet.
const maxCard = 65535 + 16

func getCard(h C.uint64_t) (*core.Card, bool) {
	v, found := lookup(h, kindCard)
	if !found {
		return nil, false
	}
	return v.(*core.Card), true
}

//export lm_card_create
func lm_card_create(h C.uint64_t, name *C.char, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_create"
	nm, good := goString(name)
	o := outBuf(buf, n)
	if !good || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	id, found := getIdentity(h)
	if !found {
		return badHandle(fn)
	}
	// Making a card changes no state, so the size is learnt by making it.
	c, err := core.NewCard(id, nm)
	if err != nil {
		return fail(err, errKeystore)
	}
	return simple(fn, o, c)
}

//export lm_card_parse
func lm_card_parse(card *C.uint8_t, n C.size_t, h *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_parse"
	if (card == nil && n != 0) || h == nil {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	if n > maxCard {
		return failf(errBadCard, "%s: card too long", fn)
	}
	b, _ := goBytes(card, n) // a Card keeps its bytes: copy
	c, err := core.ParseCard(b)
	if err != nil {
		return fail(err, errBadCard)
	}
	*h = newHandle(kindCard, c)
	return ok
}

//export lm_card_fingerprint
func lm_card_fingerprint(h C.uint64_t, buf *C.char, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_fingerprint"
	o := outStr(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	c, found := getCard(h)
	if !found {
		return badHandle(fn)
	}
	return simpleString(fn, o, c.Fingerprint())
}

//export lm_card_name
func lm_card_name(h C.uint64_t, buf *C.char, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_name"
	o := outStr(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	c, found := getCard(h)
	if !found {
		return badHandle(fn)
	}
	return simpleString(fn, o, c.Name)
}

//export lm_card_signing_key
func lm_card_signing_key(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_signing_key"
	o := outBuf(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	c, found := getCard(h)
	if !found {
		return badHandle(fn)
	}
	switch k := c.SigningKey.(type) {
	case ed25519.PublicKey:
		return simple(fn, o, k)
	case *ecdsa.PublicKey:
		return simple(fn, o, elliptic.MarshalCompressed(k.Curve, k.X, k.Y))
	}
	return failf(errInternal, "%s: unexpected signing key type", fn)
}

//export lm_card_dh_key
func lm_card_dh_key(h C.uint64_t, suite C.int, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_dh_key"
	o := outBuf(buf, n)
	s, good := suiteArg(suite)
	if !o.valid() || !good {
		return failf(errInvalidArg, "%s: NULL buffer or unknown suite", fn)
	}
	c, found := getCard(h)
	if !found {
		return badHandle(fn)
	}
	k, has := c.DHKey(s)
	if !has {
		return failf(errUnsupported, "%s: the card has no key for this suite", fn)
	}
	return simple(fn, o, k.Bytes())
}

//export lm_card_choose_suite
func lm_card_choose_suite(a, b C.uint64_t, suite *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_choose_suite"
	if suite == nil {
		return failf(errInvalidArg, "%s: NULL suite", fn)
	}
	ca, found1 := getCard(a)
	cb, found2 := getCard(b)
	if !found1 || !found2 {
		return badHandle(fn)
	}
	s, err := core.ChooseSuite(ca, cb)
	if err != nil {
		return fail(err, errUnsupported)
	}
	*suite = C.int(s)
	return ok
}

//export lm_card_close
func lm_card_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	if _, found := release(h, kindCard); !found {
		return badHandle("lm_card_close")
	}
	return ok
}
