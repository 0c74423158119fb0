package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"fmt"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/onion"
	"github.com/loramesh/loramesh-core/keystore"
)

// maxCard bounds card input: a card is one packet.
const maxCard = 65535 + 16

//export lm_card_create
func lm_card_create(h C.uint64_t, name *C.char, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	nm, good := goString(name)
	if !good {
		return failf(errInvalidArg, "lm_card_create: NULL name")
	}
	// Making a card changes no state, so the size is learnt by making it.
	return getBytes("lm_card_create", h, kindIdentity, buf, n, func(id keystore.Identity) ([]byte, error) {
		return core.NewCard(id, nm)
	})
}

//export lm_card_create_with
func lm_card_create_with(h C.uint64_t, name, onion *C.char, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	nm, good := goString(name)
	if !good {
		return failf(errInvalidArg, "lm_card_create_with: NULL name")
	}
	o, _ := goString(onion) // NULL: none
	return getBytes("lm_card_create_with", h, kindIdentity, buf, n, func(id keystore.Identity) ([]byte, error) {
		return core.NewCardWith(id, nm, core.CardOptions{Onion: o})
	})
}

//export lm_card_onion
func lm_card_onion(h C.uint64_t, buf *C.char, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	return getString("lm_card_onion", h, kindCard, buf, n, func(c *core.Card) (string, error) {
		return c.Onion(), nil
	})
}

//export lm_onion_check
func lm_onion_check(addr *C.char) (rc C.int) {
	defer guard(&rc)
	a, good := goString(addr)
	if !good {
		return failf(errInvalidArg, "lm_onion_check: NULL address")
	}
	if err := onion.Check(a); err != nil {
		return fail(err, errMalformed)
	}
	return ok
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
	return getString("lm_card_fingerprint", h, kindCard, buf, n, func(c *core.Card) (string, error) {
		return c.Fingerprint(), nil
	})
}

//export lm_card_name
func lm_card_name(h C.uint64_t, buf *C.char, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	return getString("lm_card_name", h, kindCard, buf, n, func(c *core.Card) (string, error) {
		return c.Name, nil
	})
}

//export lm_card_signing_key
func lm_card_signing_key(h C.uint64_t, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	return getBytes("lm_card_signing_key", h, kindCard, buf, n, func(c *core.Card) ([]byte, error) {
		return c.SigningKey().Bytes(), nil
	})
}

//export lm_card_dh_key
func lm_card_dh_key(h C.uint64_t, suite C.int, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_dh_key"
	s, good := suiteArg(suite)
	if !good {
		return failf(errInvalidArg, "%s: unknown suite", fn)
	}
	return getBytes(fn, h, kindCard, buf, n, func(c *core.Card) ([]byte, error) {
		k, has := c.DHKey(s)
		if !has {
			return nil, fmt.Errorf("%s: the card has no key for this suite: %w", fn, keystore.ErrUnsupportedSuite)
		}
		return k.Bytes(), nil
	})
}

//export lm_card_choose_suite
func lm_card_choose_suite(a, b C.uint64_t, suite *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_card_choose_suite"
	if suite == nil {
		return failf(errInvalidArg, "%s: NULL suite", fn)
	}
	ca, found1 := get[*core.Card](a, kindCard)
	cb, found2 := get[*core.Card](b, kindCard)
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
	return closeHandle[*core.Card]("lm_card_close", h, kindCard, nil)
}
