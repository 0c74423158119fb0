package main

/*
#include <stdint.h>
#include <stddef.h>
#define LM_TYPES_ONLY
#include "loramesh.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/messenger"
)

// engine is an engine handle's object: the engine, its locked state store,
// and what Poll returned, served one at a time under the output buffer rule.
type engine struct {
	mu      sync.Mutex
	e       *messenger.Engine
	store   *messenger.Store
	packets []messenger.Packet
	events  []messenger.Event
}

func msTime(ms C.int64_t) time.Time { return time.UnixMilli(int64(ms)) }

// profiles maps LM_LINK_* to the engine's profiles.
var profiles = map[C.int]messenger.Profile{
	C.LM_LINK_LORA: messenger.LoRa, C.LM_LINK_UDP: messenger.UDP, C.LM_LINK_STREAM: messenger.Stream,
}

// withEngine runs f with the engine behind h locked, collects what the
// engine produced, and saves the state when a save is due (the engine is
// Durable: what waits for the save, acknowledgements and first
// transmissions, is released by it and collected too).
func withEngine(fn string, h C.uint64_t, f func(en *engine) C.int) C.int {
	en, found := get[*engine](h, kindEngine)
	if !found {
		return badHandle(fn)
	}
	en.mu.Lock()
	defer en.mu.Unlock()
	if en.e == nil {
		return failf(errState, "%s: engine closed", fn)
	}
	rc := f(en)
	en.collect()
	if b, due := en.e.Changed(); due {
		if err := en.store.Save(b); err != nil {
			if rc == ok {
				return fail(fmt.Errorf("%s: %w (nothing is acknowledged until a save succeeds)", fn, err), errKeystore)
			}
			return rc
		}
		en.e.Saved()
		en.collect()
	}
	return rc
}

func (en *engine) collect() {
	p, ev := en.e.Poll()
	en.packets, en.events = append(en.packets, p...), append(en.events, ev...)
}

//export lm_engine_open
func lm_engine_open(id C.uint64_t, dir *C.char, now C.int64_t, out *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_open"
	d, good := goString(dir)
	if !good || d == "" || out == nil {
		return failf(errInvalidArg, "%s: NULL or empty argument", fn)
	}
	ident, found := get[keystore.Identity](id, kindIdentity)
	if !found {
		return badHandle(fn)
	}
	st, err := messenger.OpenStore(d, ident)
	if err != nil {
		return fail(err, errKeystore)
	}
	b, err := st.Load()
	var e *messenger.Engine
	if err == nil {
		e, err = messenger.New(ident, messenger.Config{Durable: true, History: defaultHistory}, b, msTime(now))
	}
	if err != nil {
		st.Close()
		return fail(fmt.Errorf("%s: %s: %w", fn, d, err), errKeystore)
	}
	*out = newHandle(kindEngine, &engine{e: e, store: st})
	return ok
}

//export lm_engine_add_link
func lm_engine_add_link(h C.uint64_t, name *C.char, profile C.int, frame C.uint32_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_add_link"
	n, good := goString(name)
	p, known := profiles[profile]
	if !good || !known || !printable(n, 32) || n == "" {
		return failf(errInvalidArg, "%s: NULL or invalid link name, or unknown profile", fn)
	}
	if frame != 0 {
		p.FrameSize = int(frame)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		if err := en.e.AddLink(n, p); err != nil {
			return fail(err, errInvalidArg)
		}
		return ok
	})
}

// defaultHistory: messages an engine opened through the C ABI keeps until
// lm_engine_set_history says otherwise.
const defaultHistory = 1000

// The header's LM_HISTORY_MAX is messenger.MaxHistory: a negative constant
// converted to uint does not compile, so the two cannot part.
const _ = uint(C.LM_HISTORY_MAX-messenger.MaxHistory) + uint(messenger.MaxHistory-C.LM_HISTORY_MAX)

//export lm_engine_set_history
func lm_engine_set_history(h C.uint64_t, keep C.uint32_t, maxAge C.int64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_set_history"
	if maxAge < 0 || keep > C.LM_HISTORY_MAX {
		return failf(errInvalidArg, "%s: keep at most %d messages, age not negative", fn, C.LM_HISTORY_MAX)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		en.e.SetHistory(int(keep), time.Duration(maxAge)*time.Second)
		return ok
	})
}

//export lm_engine_history
func lm_engine_history(h C.uint64_t, index C.uint64_t, ev *C.lm_event, data *C.uint8_t, dataLen *C.size_t, have *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_history"
	o := outBuf(data, dataLen)
	if ev == nil || have == nil || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		*have = 0
		r, found := en.e.HistoryAt(int(min(index, math.MaxInt32)))
		if !found {
			return ok
		}
		if rc := sizes(fn, []out{o}, []int{len(r.Text)}); rc != ok {
			return rc
		}
		*ev = C.lm_event{kind: C.LM_EVENT_MESSAGE, time_ms: C.int64_t(r.At.UnixMilli()), seq: C.uint64_t(r.Seq),
			verified: C.int32_t(b2i(r.Verified))}
		if r.Out {
			ev.kind, ev.state, ev.msg_id = C.LM_EVENT_DELIVERY, C.int32_t(r.State), C.uint64_t(r.ID)
		}
		if !r.SentAt.IsZero() {
			ev.sent_ms = C.int64_t(r.SentAt.UnixMilli())
		}
		cstr(ev.contact[:], r.Contact)
		o.put(r.Text)
		*have = 1
		return ok
	})
}

//export lm_engine_close
func lm_engine_close(h C.uint64_t) (rc C.int) {
	defer guard(&rc)
	return closeHandle("lm_engine_close", h, kindEngine, func(en *engine) error {
		en.mu.Lock()
		defer en.mu.Unlock()
		err := en.store.Save(en.e.State())
		en.e.Close()
		en.e = nil
		return errors.Join(err, en.store.Close())
	})
}

// printable: 1..max bytes of printable ASCII without tab or newline, the
// shape of link names and addresses (they travel in tab-separated lines).
func printable(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func addrArgs(fn string, link, addr *C.char) (messenger.Addr, C.int) {
	l, good1 := goString(link)
	a, good2 := goString(addr)
	if !good1 || !good2 || l == "" || !printable(l, C.LM_LINK_MAX) || !printable(a, C.LM_ADDR_MAX) {
		return messenger.Addr{}, failf(errInvalidArg, "%s: NULL link or address, or not printable ASCII of at most %d and %d bytes",
			fn, C.LM_LINK_MAX, C.LM_ADDR_MAX)
	}
	return messenger.Addr{Link: l, Addr: a}, ok
}

// ---- contacts ---------------------------------------------------------------

//export lm_engine_contact_add
func lm_engine_contact_add(h C.uint64_t, name *C.char, card *C.uint8_t, n C.size_t, flags C.uint32_t, result *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_contact_add"
	nm, good := goString(name)
	b, good2 := goBytes(card, n)
	if !good || !good2 || result == nil || flags&^C.LM_CONTACT_REPLACE != 0 {
		return failf(errInvalidArg, "%s: NULL argument or unknown flags", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		r, err := en.e.AddContact(nm, b, flags&C.LM_CONTACT_REPLACE != 0)
		if err != nil {
			return fail(err, errInvalidArg)
		}
		switch {
		case r.Unchanged:
			*result = C.LM_IMPORT_UNCHANGED
		case r.Replaced:
			*result = C.LM_IMPORT_REPLACED
		default:
			*result = C.LM_IMPORT_NEW
		}
		return ok
	})
}

//export lm_engine_contact_remove
func lm_engine_contact_remove(h C.uint64_t, name *C.char) (rc C.int) {
	defer guard(&rc)
	nm, good := goString(name)
	if !good {
		return failf(errInvalidArg, "lm_engine_contact_remove: NULL name")
	}
	return withEngine("lm_engine_contact_remove", h, func(en *engine) C.int {
		if err := en.e.RemoveContact(nm); err != nil {
			return fail(err, errNotFound)
		}
		return ok
	})
}

//export lm_engine_contact_verify
func lm_engine_contact_verify(h C.uint64_t, name, fingerprint *C.char) (rc C.int) {
	defer guard(&rc)
	nm, good := goString(name)
	fp, good2 := goString(fingerprint)
	if !good || !good2 {
		return failf(errInvalidArg, "lm_engine_contact_verify: NULL argument")
	}
	return withEngine("lm_engine_contact_verify", h, func(en *engine) C.int {
		if err := en.e.VerifyContact(nm, fp); err != nil {
			return fail(err, errAuth)
		}
		return ok
	})
}

//export lm_engine_contact_set_addr
func lm_engine_contact_set_addr(h C.uint64_t, name, link, addr *C.char) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_contact_set_addr"
	nm, good := goString(name)
	a, rc := addrArgs(fn, link, addr)
	if rc != ok {
		return rc
	}
	if !good {
		return failf(errInvalidArg, "%s: NULL name", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		if err := en.e.SetContactAddrs(nm, a); err != nil {
			return fail(err, errInvalidArg)
		}
		return ok
	})
}

// lm_engine_contacts lists contacts, a line each, fields separated by tabs:
// name, display name, fingerprint, verified, session, queued, last link, last
// address. Display names are printable text without tabs or newlines (cards
// refuse control characters).
//
//export lm_engine_contacts
func lm_engine_contacts(h C.uint64_t, buf *C.char, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_contacts"
	o := outStr(buf, n)
	if !o.valid() {
		return failf(errInvalidArg, "%s: NULL buffer", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		var b strings.Builder
		for _, c := range en.e.Contacts() {
			fmt.Fprintf(&b, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", c.Name, c.DisplayName, c.Fingerprint,
				b2i(c.Verified), b2i(c.Session), c.Queued, c.LastAddr.Link, c.LastAddr.Addr)
		}
		return simpleString(fn, o, b.String())
	})
}

//export lm_engine_contact_card
func lm_engine_contact_card(h C.uint64_t, name *C.char, buf *C.uint8_t, n *C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_contact_card"
	nm, good := goString(name)
	o := outBuf(buf, n)
	if !good || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		c, err := en.e.Contact(nm)
		if err != nil {
			return fail(err, errNotFound)
		}
		return simple(fn, o, c.Card)
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---- messages and packets ---------------------------------------------------

//export lm_engine_send
func lm_engine_send(h C.uint64_t, now C.int64_t, contact *C.char, text *C.uint8_t, n C.size_t, id *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_send"
	nm, good := goString(contact)
	t, good2 := view(text, n)
	if !good || !good2 || id == nil {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		m, err := en.e.Send(msTime(now), nm, t)
		if err != nil {
			return fail(err, errInvalidArg)
		}
		*id = C.uint64_t(m)
		return ok
	})
}

//export lm_engine_receive
func lm_engine_receive(h C.uint64_t, now C.int64_t, link, addr *C.char, pkt *C.uint8_t, n C.size_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_receive"
	a, rc := addrArgs(fn, link, addr)
	if rc != ok {
		return rc
	}
	p, good := view(pkt, n)
	if !good {
		return failf(errInvalidArg, "%s: NULL packet", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		en.e.Receive(msTime(now), a, p)
		return ok
	})
}

//export lm_engine_tick
func lm_engine_tick(h C.uint64_t, now C.int64_t) (rc C.int) {
	defer guard(&rc)
	return withEngine("lm_engine_tick", h, func(en *engine) C.int {
		en.e.Tick(msTime(now))
		return ok
	})
}

//export lm_engine_deadline
func lm_engine_deadline(h C.uint64_t, deadline *C.int64_t) (rc C.int) {
	defer guard(&rc)
	if deadline == nil {
		return failf(errInvalidArg, "lm_engine_deadline: NULL argument")
	}
	return withEngine("lm_engine_deadline", h, func(en *engine) C.int {
		*deadline = -1
		if len(en.packets)+len(en.events) > 0 {
			*deadline = 0 // something is waiting to be taken: now
		} else if d := en.e.Deadline(); !d.IsZero() {
			*deadline = C.int64_t(d.UnixMilli())
		}
		return ok
	})
}

//export lm_engine_next_packet
func lm_engine_next_packet(h C.uint64_t, link *C.char, linkLen *C.size_t, addr *C.char, addrLen *C.size_t,
	pkt *C.uint8_t, pktLen *C.size_t, have *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_next_packet"
	outs := []out{outStr(link, linkLen), outStr(addr, addrLen), outBuf(pkt, pktLen)}
	if have == nil || !outs[0].valid() || !outs[1].valid() || !outs[2].valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		*have = 0
		if len(en.packets) == 0 {
			return ok
		}
		p := en.packets[0]
		if rc := sizes(fn, outs, []int{len(p.To.Link) + 1, len(p.To.Addr) + 1, len(p.Data)}); rc != ok {
			return rc
		}
		outs[0].putString(p.To.Link)
		outs[1].putString(p.To.Addr)
		outs[2].put(p.Data)
		en.packets = en.packets[1:]
		*have = 1
		return ok
	})
}

// eventData is the variable part of an event, for the data buffer.
func eventData(e messenger.Event) []byte {
	switch e.Kind {
	case messenger.EventMessage:
		return e.Text
	case messenger.EventStranger:
		return e.Key.Bytes()
	}
	return []byte(e.Reason)
}

//export lm_engine_next_event
func lm_engine_next_event(h C.uint64_t, ev *C.lm_event, data *C.uint8_t, dataLen *C.size_t, have *C.int) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_engine_next_event"
	o := outBuf(data, dataLen)
	if ev == nil || have == nil || !o.valid() {
		return failf(errInvalidArg, "%s: NULL argument", fn)
	}
	return withEngine(fn, h, func(en *engine) C.int {
		*have = 0
		if len(en.events) == 0 {
			return ok
		}
		e := en.events[0]
		d := eventData(e)
		if rc := sizes(fn, []out{o}, []int{len(d)}); rc != ok {
			return rc
		}
		*ev = C.lm_event{
			kind: C.int32_t(e.Kind), state: C.int32_t(e.State), msg_id: C.uint64_t(e.ID), seq: C.uint64_t(e.Seq),
			time_ms: C.int64_t(e.At.UnixMilli()), verified: C.int32_t(b2i(e.Verified)),
		}
		if !e.SentAt.IsZero() {
			ev.sent_ms = C.int64_t(e.SentAt.UnixMilli())
		}
		cstr(ev.contact[:], e.Contact)
		cstr(ev.link[:], e.From.Link)
		cstr(ev.addr[:], e.From.Addr)
		cstr(ev.fingerprint[:], e.Fingerprint)
		o.put(d)
		en.events = en.events[1:]
		*have = 1
		return ok
	})
}

// cstr copies s into a fixed C char array, NUL terminated (s always fits:
// names, links, addresses and fingerprints are bounded where they enter).
func cstr(dst []C.char, s string) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(dst))
	n := copy(b[:len(b)-1], s)
	clear(b[n:])
}

// engineCode maps the engine's errors for codeOf.
func engineCode(err error) (C.int, bool) {
	switch {
	case errors.Is(err, messenger.ErrStateInUse):
		return errInUse, true
	case errors.Is(err, messenger.ErrKeyChanged):
		return errKeyChanged, true
	case errors.Is(err, messenger.ErrKeyConflict):
		return errConflict, true
	case errors.Is(err, messenger.ErrQueueFull):
		return errFull, true
	case errors.Is(err, messenger.ErrFingerprint):
		return errAuth, true
	case errors.Is(err, messenger.ErrNoContact), errors.Is(err, messenger.ErrNoAddress):
		return errNotFound, true
	case errors.Is(err, messenger.ErrContactName), errors.Is(err, messenger.ErrTooLarge),
		errors.Is(err, messenger.ErrUnknownLink), errors.Is(err, messenger.ErrConfig):
		return errInvalidArg, true
	case errors.Is(err, messenger.ErrStateVersion):
		return errVersion, true
	case errors.Is(err, messenger.ErrStateOwner):
		return errConflict, true
	}
	return 0, false
}
