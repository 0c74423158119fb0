package messenger

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A node reachable by radio and Tor at once (issue 17): two engines, each
// with a radio link ("radio", LoRa, one shared channel) and a Tor link
// ("tor", Stream, addressed by onion). The test plays the host: it carries
// packets on the links that are up, drops radio frames silently when radio
// is down (nobody hears them), and reports failed Tor sends with
// Unreachable, as the daemon does for a connection that fails.

type twoLinks struct {
	t          *testing.T
	now        time.Time
	a, b       *linkNode
	radioUp    bool
	torUp      map[*linkNode]bool // its onion service is up
	radioDelay time.Duration
	torDelay   time.Duration
	air        []linkFlight
	unreach    int
}

type linkNode struct {
	name   string
	e      *Engine
	onion  string
	events []Event
	sent   map[string][]int // packet sizes per link
}

type linkFlight struct {
	at   time.Time
	from Addr
	to   *linkNode
	data []byte
}

func newTwoLinks(t *testing.T, radio, tor Profile) *twoLinks {
	n := &twoLinks{t: t, now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), radioUp: true,
		radioDelay: 2 * time.Second, torDelay: 500 * time.Millisecond}
	mk := func(name string, seed byte) *linkNode {
		e, err := New(fixedIdentity(t, seed), Config{}, nil, n.now)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		if err := e.AddLink("radio", radio); err != nil {
			t.Fatal(err)
		}
		if err := e.AddLink("tor", tor); err != nil {
			t.Fatal(err)
		}
		return &linkNode{name: name, e: e, onion: name + ".onion", sent: map[string][]int{}}
	}
	n.a, n.b = mk("alice", 1), mk("bob", 2)
	n.torUp = map[*linkNode]bool{n.a: true, n.b: true}
	for _, x := range [][2]*linkNode{{n.a, n.b}, {n.b, n.a}} {
		id := fixedIdentity(t, map[string]byte{"alice": 1, "bob": 2}[x[1].name])
		if _, err := x[0].e.AddContact(x[1].name, card(t, id, x[1].name), false); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (n *twoLinks) other(x *linkNode) *linkNode {
	if x == n.a {
		return n.b
	}
	return n.a
}

func (n *twoLinks) collect() {
	for _, x := range []*linkNode{n.a, n.b} {
		pkts, evs := x.e.Poll()
		x.events = append(x.events, evs...)
		for _, p := range pkts {
			x.sent[p.To.Link] = append(x.sent[p.To.Link], len(p.Data))
			to := n.other(x)
			switch p.To.Link {
			case "radio":
				if n.radioUp {
					n.air = append(n.air, linkFlight{n.now.Add(n.radioDelay), Addr{"radio", ""}, to, p.Data})
				}
			case "tor":
				if p.To.Addr != to.onion || !n.torUp[to] || !n.torUp[x] {
					n.unreach++
					x.e.Unreachable(n.now, p.To, "onion service descriptor can not be found")
					continue
				}
				n.air = append(n.air, linkFlight{n.now.Add(n.torDelay), Addr{"tor", x.onion}, to, p.Data})
			}
		}
	}
}

func (n *twoLinks) step(limit time.Time) bool {
	n.collect()
	next := limit
	for _, f := range n.air {
		next = minTime(next, f.at)
	}
	for _, x := range []*linkNode{n.a, n.b} {
		if d := x.e.Deadline(); !d.IsZero() {
			next = minTime(next, d)
		}
	}
	if next.After(n.now) {
		n.now = next
	}
	var later []linkFlight
	for _, f := range n.air {
		if f.at.After(n.now) {
			later = append(later, f)
			continue
		}
		f.to.e.Receive(n.now, f.from, f.data)
	}
	n.air = later
	for _, x := range []*linkNode{n.a, n.b} {
		if d := x.e.Deadline(); !d.IsZero() && !d.After(n.now) {
			x.e.Tick(n.now)
		}
	}
	n.collect()
	return n.now.Before(limit)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// until runs until cond holds, or fails the test after d.
func (n *twoLinks) until(d time.Duration, what string, cond func() bool) time.Duration {
	start, limit := n.now, n.now.Add(d)
	for i := 0; !cond(); i++ {
		if !n.step(limit) || i > 1_000_000 {
			for _, x := range []*linkNode{n.a, n.b} {
				for _, e := range x.events {
					n.t.Logf("%s: %v %s %v %s %v", x.name, e.At.Sub(start), e.Contact, e.Kind, e.Reason, e.From)
				}
			}
			n.t.Fatalf("%s: not within %v\nalice: %s\nbob: %s", what, d, n.a.e.describe(), n.b.e.describe())
		}
	}
	return n.now.Sub(start)
}

func (x *linkNode) state(id MsgID) DeliveryState {
	var st DeliveryState
	for _, e := range x.events {
		if e.Kind == EventDelivery && e.ID == id {
			st = e.State
		}
	}
	return st
}

func (x *linkNode) got(text string) bool {
	return slices.ContainsFunc(x.events, func(e Event) bool { return e.Kind == EventMessage && string(e.Text) == text })
}

func (x *linkNode) last(t *testing.T, contact string) Addr {
	c, err := x.e.Contact(contact)
	if err != nil {
		t.Fatal(err)
	}
	return c.LastAddr
}

func (n *twoLinks) send(x *linkNode, text string) MsgID {
	id, err := x.e.Send(n.now, n.other(x).name, []byte(text))
	if err != nil {
		n.t.Fatal(err)
	}
	n.collect()
	return id
}

// Both configured at both addresses, Tor answering first: the initiator
// learns Tor from message 2 and data goes there only. Then Bob's onion
// service dies: Alice falls back to the radio at once, and back to Tor
// when the radio goes silent and Tor works again.
func TestRadioAndTor(t *testing.T) {
	n := newTwoLinks(t, LoRa, Stream)
	for _, x := range []*linkNode{n.a, n.b} {
		o := n.other(x)
		if err := x.e.SetContactAddrs(o.name, Addr{"tor", o.onion}, Addr{"radio", ""}); err != nil {
			t.Fatal(err)
		}
	}
	id := n.send(n.a, "over tor")
	took := n.until(time.Minute, "delivery over Tor", func() bool { return n.a.state(id) == Delivered })
	if l := n.a.last(t, "bob"); l != (Addr{"tor", "bob.onion"}) {
		t.Fatalf("alice reaches bob at %v, want tor (message 2 came that way)", l)
	}
	if l := n.b.last(t, "alice"); l != (Addr{"tor", "alice.onion"}) {
		t.Fatalf("bob reaches alice at %v", l)
	}
	if len(n.a.sent["radio"]) != 1 || !n.b.got("over tor") {
		t.Fatalf("alice put %d packets on the radio (message 1 only expected)", len(n.a.sent["radio"]))
	}
	t.Logf("over Tor in %v", took)

	// Bob's tor dies; Alice's next send fails at once and she falls back.
	n.torUp[n.b] = false
	radioBefore := len(n.a.sent["radio"])
	id = n.send(n.a, "over the radio")
	took = n.until(30*time.Minute, "fallback to the radio", func() bool { return n.a.state(id) == Delivered })
	if !n.b.got("over the radio") || n.a.last(t, "bob") != (Addr{"radio", ""}) {
		t.Fatalf("after Tor failed: last %v", n.a.last(t, "bob"))
	}
	if n.unreach == 0 || n.unreach > 20 {
		t.Fatalf("%d Tor sends failed: want a few, not a loop", n.unreach)
	}
	for _, sz := range n.a.sent["radio"][radioBefore:] {
		if sz > LoRa.FrameSize {
			t.Fatalf("a %d-byte packet on the radio", sz)
		}
	}
	t.Logf("fell back to the radio in %v (%d Tor failures reported)", took, n.unreach)

	// Bob leaves radio range and his tor comes back: Alice's packets go
	// unanswered on the radio, and a handshake to every address finds Tor.
	n.radioUp, n.torUp[n.b] = false, true
	id = n.send(n.a, "back on tor")
	took = n.until(time.Hour, "back to Tor", func() bool { return n.a.state(id) == Delivered })
	if !n.b.got("back on tor") || n.a.last(t, "bob") != (Addr{"tor", "bob.onion"}) {
		t.Fatalf("radio silent: last %v", n.a.last(t, "bob"))
	}
	t.Logf("back on Tor in %v", took)

	// The other way: Bob, whose last address for Alice is Tor, answers.
	id = n.send(n.b, "bob here")
	n.until(time.Minute, "bob's reply", func() bool { return n.b.state(id) == Delivered })
}

// Fragments fit every link a contact may be reached on; a Tor-only
// contact gets the Stream profile's large frames.
func TestFragmentsFitTheSmallestLink(t *testing.T) {
	text := strings.Repeat("x", 1500)
	for _, tc := range []struct {
		radio bool // configured beside Tor
		max   int
		n     int // data packets for the message
	}{
		{false, Stream.FrameSize, 1},
		{true, LoRa.FrameSize, 7},
	} {
		n := newTwoLinks(t, LoRa, Stream)
		n.radioUp = false // everything goes over Tor
		for _, x := range []*linkNode{n.a, n.b} {
			addrs := []Addr{{"tor", n.other(x).onion}}
			if tc.radio {
				addrs = append(addrs, Addr{"radio", ""})
			}
			if err := x.e.SetContactAddrs(n.other(x).name, addrs...); err != nil {
				t.Fatal(err)
			}
		}
		id := n.send(n.a, text)
		n.until(10*time.Minute, "delivery", func() bool { return n.a.state(id) == Delivered })
		big := 0
		for _, sz := range n.a.sent["tor"] {
			if sz > tc.max {
				t.Fatalf("radio %v: a %d-byte packet, at most %d expected", tc.radio, sz, tc.max)
			}
			if sz > 200 {
				big++
			}
		}
		if big != tc.n {
			t.Fatalf("radio %v: %d large packets (%v), want %d", tc.radio, big, n.a.sent["tor"], tc.n)
		}
	}
}

// A contact whose onion is never reachable: the message stays queued
// (no Sent), then fails at the link's deadline with the host's reason.
func TestUnreachableOnionFailsWithReason(t *testing.T) {
	n := newTwoLinks(t, LoRa, Stream)
	n.torUp[n.b] = false
	if err := n.a.e.SetLinkDeadline("tor", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := n.a.e.SetLinkDeadline("nope", time.Minute); err == nil {
		t.Fatal("deadline for an unknown link accepted")
	}
	n.a.e.SetContactAddrs("bob", Addr{"tor", "bob.onion"})
	id := n.send(n.a, "anyone there?")
	for limit := n.now.Add(2 * time.Minute); n.step(limit); {
	}
	if st := n.a.state(id); st != Queued {
		t.Fatalf("after 2 minutes: %v, want queued", st)
	}
	took := n.until(2*time.Minute, "failure", func() bool { return n.a.state(id) == Failed })
	var reason string
	for _, e := range n.a.events {
		if e.Kind == EventDelivery && e.ID == id && e.State == Failed {
			reason = e.Reason
		}
	}
	want := "tor:bob.onion unreachable: onion service descriptor can not be found"
	if !strings.Contains(reason, "no session with bob within 3m0s") || !strings.Contains(reason, want) {
		t.Fatalf("reason %q", reason)
	}
	if n.unreach > 10 {
		t.Fatalf("%d failed sends in 3 minutes", n.unreach)
	}
	t.Logf("failed %v after the check: %s", took, reason)
	if err := n.a.e.SetLinkDeadline("tor", 0); err == nil {
		t.Fatal("zero deadline accepted")
	}
}

// A state saved while Tor was on, loaded by a run without it: the Tor
// addresses are skipped, not followed into a link that is not there.
func TestAddressOnAMissingLink(t *testing.T) {
	n := newTwoLinks(t, UDP, Stream)
	n.a.e.SetContactAddrs("bob", Addr{"tor", "bob.onion"}, Addr{"radio", ""})
	n.b.e.SetContactAddrs("alice", Addr{"radio", ""})
	id := n.send(n.a, "first")
	n.until(time.Minute, "delivery", func() bool { return n.a.state(id) == Delivered })
	if n.a.last(t, "bob") != (Addr{"tor", "bob.onion"}) {
		t.Fatalf("last %v", n.a.last(t, "bob"))
	}
	state := n.a.e.State()
	e, err := New(fixedIdentity(t, 1), Config{}, state, n.now)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.AddLink("radio", UDP); err != nil {
		t.Fatal(err)
	}
	n.a.e = e
	torBefore := len(n.a.sent["tor"])
	id = n.send(n.a, "second, by radio")
	n.until(time.Minute, "delivery by radio", func() bool { return n.a.state(id) == Delivered })
	if !n.b.got("second, by radio") || len(n.a.sent["tor"]) != torBefore {
		t.Fatalf("not delivered by radio alone: %d packets for Tor", len(n.a.sent["tor"])-torBefore)
	}
}
