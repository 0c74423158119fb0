package messenger

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/files"
	"github.com/loramesh/loramesh-core/keystore"
)

// A contact is a card: its signing key is who the contact is (docs/PROTOCOL.md
// §6). Its DH keys are what handshakes authenticate, and no two contacts, nor
// a contact and this node, may share one, so a DH key names one contact.
type contact struct {
	name     string
	card     *core.Card
	id       [32]byte // the card's signing key ID
	verified bool
	addrs    []Addr // configured by the user
	last     Addr   // learned from authenticated transport packets
	hw       uint64 // highest message 1 timestamp accepted from it
	hw2      uint64 // highest message 2 timestamp accepted from it
	added    time.Time

	current   *session   // confirmed, used to send
	candidate *session   // answered message 1, awaiting confirmation
	old       []*session // replaced, still receiving until retired
	pending   *handshake

	queue     []*outMsg
	delivered map[msgID]delivered
	partial   map[msgID]*partialMsg
	acks      map[msgID]*ackDue
	nextHS    time.Time // no new handshake before this (backoff)
	hsDelay   time.Duration
	blocked   time.Time // sending waits for airtime until then
	due       time.Time // the earliest of its deadlines
	slot      int       // in the engine's schedule, -1 if not there
}

// ContactInfo describes a contact. DisplayName comes from the card: any
// printable text the contact chose, to be escaped when shown.
type ContactInfo struct {
	Name        string
	DisplayName string
	Fingerprint string
	Verified    bool
	Card        []byte
	Addrs       []Addr
	LastAddr    Addr
	Session     bool // a confirmed session exists
	Queued      int  // messages not yet delivered or failed
}

// Import reports what AddContact did.
type Import struct {
	ContactInfo
	Unchanged      bool   // the same card again: nothing changed, verification kept
	Replaced       bool   // another identity replaced the contact's: verification reset
	OldFingerprint string // the replaced identity's fingerprint
}

func (c *contact) info() ContactInfo {
	return ContactInfo{
		Name: c.name, DisplayName: c.card.Name, Fingerprint: c.card.Fingerprint(), Verified: c.verified,
		Card: c.card.Bytes(), Addrs: slices.Clone(c.addrs), LastAddr: c.last,
		Session: c.current != nil, Queued: len(c.queue),
	}
}

func checkContactName(name string) error {
	if files.CheckName(name) != nil {
		return fmt.Errorf("%q: %w", name, ErrContactName)
	}
	return nil
}

// AddContact imports card under name. The same card again changes nothing;
// a new card of the same identity (new display name or keys) keeps the
// verification; a different identity under an existing name needs replace
// and resets it. A card of this node, or one sharing a key with another
// contact, is refused.
func (e *Engine) AddContact(name string, card []byte, replace bool) (Import, error) {
	if err := checkContactName(name); err != nil {
		return Import{}, fmt.Errorf("add contact: %w", err)
	}
	c, err := core.ParseCard(card)
	if err != nil {
		return Import{}, fmt.Errorf("add contact %s: %w", name, err)
	}
	id := c.SigningKey().ID()
	if id == e.myID || e.ownsDHKey(c) {
		return Import{}, fmt.Errorf("add contact %s: this is your own card: %w", name, ErrKeyConflict)
	}
	for _, o := range e.contacts {
		if o.name == name {
			continue
		}
		if o.id == id {
			return Import{}, fmt.Errorf("add contact %s: the same identity is contact %s: %w", name, o.name, ErrKeyConflict)
		}
		for _, k := range c.DHKeys() {
			if slices.ContainsFunc(o.card.DHKeys(), k.Equal) {
				return Import{}, fmt.Errorf("add contact %s: its %v key belongs to contact %s: %w", name, k.Suite(), o.name, ErrKeyConflict)
			}
		}
	}
	old := e.contacts[name]
	var res Import
	switch {
	case old != nil && bytes.Equal(old.card.Bytes(), card):
		res.ContactInfo, res.Unchanged = old.info(), true
		return res, nil
	case old != nil && old.id == id:
		e.unindex(old)
		old.card = c // same identity, new card: sessions and verification stay
		e.index(old)
		e.updateAllowed()
	case old != nil && !replace:
		return Import{}, fmt.Errorf("add contact %s: has fingerprint %s, the new card %s: %w",
			name, old.card.Fingerprint(), c.Fingerprint(), ErrKeyChanged)
	case old != nil:
		res.Replaced, res.OldFingerprint = true, old.card.Fingerprint()
		e.dropContact(old, "the contact's key was replaced")
		e.unschedule(old)
		e.updateAllowed()
		fallthrough
	default:
		nc := &contact{name: name, card: c, id: id, added: e.now, slot: -1,
			delivered: map[msgID]delivered{}, partial: map[msgID]*partialMsg{}, acks: map[msgID]*ackDue{}}
		e.contacts[name] = nc
		e.index(nc)
		e.responder.Allow(c.DHKeys()...)
	}
	e.touch(e.contacts[name])
	e.changed(0)
	res.ContactInfo = e.contacts[name].info()
	return res, nil
}

func (e *Engine) ownsDHKey(c *core.Card) bool {
	for _, k := range c.DHKeys() {
		if mine, err := e.id.DHPublic(k.Suite()); err == nil && mine.Equal(k) {
			return true
		}
	}
	return false
}

// RemoveContact forgets a contact: its sessions are closed and its
// undelivered messages fail.
func (e *Engine) RemoveContact(name string) error {
	c, err := e.contact(name)
	if err != nil {
		return fmt.Errorf("remove contact: %w", err)
	}
	e.dropContact(c, "the contact was removed")
	e.unschedule(c)
	delete(e.contacts, name)
	e.updateAllowed()
	e.changed(0)
	return nil
}

// dropContact closes every session of c and fails its queue.
func (e *Engine) dropContact(c *contact, why string) {
	for _, s := range c.sessions() {
		e.closeSession(s)
	}
	c.current, c.candidate, c.old = nil, nil, nil
	if c.pending != nil {
		e.abandon(c.pending)
	}
	for _, m := range c.queue {
		e.fail(m, why)
	}
	c.queue = nil
}

// VerifyContact marks a contact verified if typed is its fingerprint, read
// out of band (case, spaces and dashes do not matter). A mismatch says so
// without showing the expected value, which a user would copy rather than
// compare.
func (e *Engine) VerifyContact(name, typed string) error {
	c, err := e.contact(name)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	norm := func(s string) string {
		return strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z':
				return r - 'a' + 'A'
			case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
				return r
			}
			return -1
		}, s)
	}
	if norm(typed) != norm(c.card.Fingerprint()) {
		return fmt.Errorf("verify %s: %w", name, ErrFingerprint)
	}
	if !c.verified {
		c.verified = true
		e.changed(0)
	}
	return nil
}

// SetContactAddrs sets where a contact is first sent to, until it answers
// from somewhere (then its last address is used, and these on failure).
func (e *Engine) SetContactAddrs(name string, addrs ...Addr) error {
	c, err := e.contact(name)
	if err != nil {
		return fmt.Errorf("set address: %w", err)
	}
	for _, a := range addrs {
		if _, ok := e.links[a.Link]; !ok {
			return fmt.Errorf("set address of %s: %q: %w", name, a.Link, ErrUnknownLink)
		}
	}
	c.addrs = slices.Clone(addrs)
	e.changed(0)
	e.touch(c)
	e.pump()
	return nil
}

// Contact describes one contact.
func (e *Engine) Contact(name string) (ContactInfo, error) {
	c, err := e.contact(name)
	if err != nil {
		return ContactInfo{}, err
	}
	return c.info(), nil
}

// Contacts describes every contact, sorted by name.
func (e *Engine) Contacts() []ContactInfo {
	var out []ContactInfo
	for _, c := range e.contacts {
		out = append(out, c.info())
	}
	slices.SortFunc(out, func(a, b ContactInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (e *Engine) contact(name string) (*contact, error) {
	c := e.contacts[name]
	if c == nil {
		return nil, fmt.Errorf("%q: %w", name, ErrNoContact)
	}
	return c, nil
}

// updateAllowed answers handshakes from the contacts' DH keys and no one
// else: with no contacts, nobody.
func (e *Engine) updateAllowed() {
	var keys []keystore.PublicKey
	for _, c := range e.contacts {
		keys = append(keys, c.card.DHKeys()...)
	}
	e.responder.SetAllowed(keys...)
}

// dest is where c's packets go: its last confirmed address, else the
// configured ones, on links the host registered.
func (c *contact) dest(links map[string]*link) []Addr {
	if links[c.last.Link] != nil {
		return []Addr{c.last}
	}
	var to []Addr // a link the host no longer registers is skipped
	for _, a := range c.addrs {
		if links[a.Link] != nil {
			to = append(to, a)
		}
	}
	return to
}

func (c *contact) sessions() []*session {
	var ss []*session
	for _, s := range append([]*session{c.current, c.candidate}, c.old...) {
		if s != nil {
			ss = append(ss, s)
		}
	}
	return ss
}
