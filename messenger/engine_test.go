package messenger

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
)

// On a LoRa link the engine keeps to the duty cycle: whatever is queued, the
// airtime it hands out in any hour is at most one hour's share plus the
// burst it may save up (36 s each at 1 %), and everything still arrives.
func TestDutyCycle(t *testing.T) {
	n := newSim(t, 12)
	a := n.add("alice", fixedIdentity(t, 1), LoRa)
	b := n.add("bob", fixedIdentity(t, 2), LoRa)
	n.befriend(a, b)
	type tx struct {
		at time.Time
		d  time.Duration
	}
	var sent []tx
	n.tap = func(s *simNode, p Packet) {
		if s == a {
			sent = append(sent, tx{n.now, LoRa.airtime(len(p.Data))})
		}
	}
	var ids []MsgID
	for range 20 {
		ids = append(ids, a.send(t, n.now, "bob", strings.Repeat("d", 600)))
	}
	n.run(12 * time.Hour)
	for _, id := range ids {
		if !slices.Contains(a.states(id), Delivered) {
			t.Fatalf("message %d: %v", id, a.states(id))
		}
	}
	limit := 2 * LoRa.budgetCap()
	for i := range sent {
		var used time.Duration
		for _, x := range sent[i:] {
			if x.at.Sub(sent[i].at) < time.Hour {
				used += x.d
			}
		}
		if used > limit+time.Second {
			t.Fatalf("%v of airtime in the hour from %v", used, sent[i].at)
		}
	}
	t.Logf("20 messages of 600 bytes: %d frames over %v", len(sent), sent[len(sent)-1].at.Sub(sent[0].at))
}

// Contacts, verification, addresses and replay marks survive a restart;
// a damaged state file is refused, not half read.
func TestStateRoundTrip(t *testing.T) {
	n, a, b, _ := setup(t)
	talk(t, n, a, b, "one")
	b.e.VerifyContact("alice", a.e.contactFingerprint(t))
	st := b.e.State()
	e, err := New(b.id, Config{}, st, n.now)
	if err != nil {
		t.Fatal(err)
	}
	c := e.contacts["alice"]
	old := b.e.contacts["alice"]
	if c == nil || !c.verified || c.hw != old.hw || c.hw == 0 || c.last != a.addr || !slices.Equal(c.addrs, old.addrs) {
		t.Fatalf("restored %+v", c)
	}
	if e.lastTS != b.e.lastTS {
		t.Fatal("own timestamp lost")
	}
	for i := range st {
		bad := slices.Clone(st)
		bad[i] ^= 0x40
		if _, err := New(b.id, Config{}, bad, n.now); err == nil {
			// A flip inside the card's signed bytes or a name may still
			// parse; anything that parses must be a valid state.
			continue
		}
	}
	if _, err := New(b.id, Config{}, st[:len(st)-1], n.now); !errors.Is(err, ErrStateFile) {
		t.Fatalf("truncated state: %v", err)
	}
	if _, err := New(a.id, Config{}, st, n.now); !errors.Is(err, ErrStateOwner) {
		t.Fatalf("another identity's state: %v", err)
	}
}

func (e *Engine) contactFingerprint(t *testing.T) string {
	k, err := core.SigningKeyOf(e.id)
	if err != nil {
		t.Fatal(err)
	}
	return k.Fingerprint()
}

// A peer that restarts mid-conversation loses its sessions: the sender's
// next messages find no acknowledgement, the sender handshakes again, and
// every message arrives once, with no user action.
func TestPeerRestart(t *testing.T) {
	n, a, b, _ := setup(t)
	talk(t, n, a, b, "before")
	st := b.e.State()
	b.e.Close()
	e, _ := New(b.id, Config{}, st, n.now)
	e.AddLink("udp", UDP)
	b.e = e
	ids := []MsgID{a.send(t, n.now, "bob", "after 1"), a.send(t, n.now, "bob", "after 2")}
	n.run(5 * time.Minute)
	for _, id := range ids {
		if !slices.Contains(a.states(id), Delivered) {
			t.Fatalf("%v", a.states(id))
		}
	}
	got := b.messages()
	slices.Sort(got)
	if !slices.Equal(got, []string{"alice: after 1", "alice: after 2", "alice: before"}) {
		t.Fatalf("bob got %q", got)
	}
}

// A contact that is away: the message stays queued, then is delivered when
// it is back; one that never comes back: failed, with why, never delivered.
func TestAbsentContact(t *testing.T) {
	n, a, b, _ := setup(t)
	b.down = true
	id := a.send(t, n.now, "bob", "are you there")
	n.run(3 * time.Minute)
	if st := a.states(id); !slices.Equal(st, []DeliveryState{Queued}) {
		t.Fatalf("while away: %v", st)
	}
	b.down = false
	n.run(5 * time.Minute)
	if !slices.Contains(a.states(id), Delivered) {
		t.Fatalf("after return: %v", a.states(id))
	}
	b.down = true
	id = a.send(t, n.now, "bob", "gone")
	n.run(UDP.Deadline + time.Minute)
	var failed []Event
	for _, e := range a.events {
		if e.ID == id && e.State == Failed {
			failed = append(failed, e)
		}
	}
	if len(failed) != 1 || failed[0].Reason == "" || slices.Contains(a.states(id), Delivered) {
		t.Fatalf("never back: %v %v", a.states(id), failed)
	}
}

// Sessions are renewed by message count with nothing lost across the switch;
// the replaced sessions retire.
func TestRenewal(t *testing.T) {
	n := newSim(t, 13)
	p := UDP
	p.RenewCount = 5
	a := n.add("alice", fixedIdentity(t, 1), p)
	b := n.add("bob", fixedIdentity(t, 2), p)
	n.befriend(a, b)
	n.loss = 0.1
	for i := range 40 {
		a.send(t, n.now, "bob", strings.Repeat("r", i))
		b.send(t, n.now, "alice", strings.Repeat("s", i))
		n.run(200 * time.Millisecond)
	}
	n.run(10 * time.Minute)
	if len(a.take(EventMessage)) != 40 || len(b.take(EventMessage)) != 40 {
		t.Fatal("messages lost across renewals")
	}
	if s := len(a.take(EventSession)); s < 8 {
		t.Fatalf("%d sessions for 80 messages at 5 per session", s)
	}
	if c := a.e.contacts["bob"]; len(c.old) != 0 || c.candidate != nil {
		t.Fatalf("replaced sessions not retired: %s", a.e.describe())
	}
}

// Importing a card: the same card keeps its state; a new card of the same
// identity keeps the verification; another identity under the name needs
// replace and resets it; a wrong fingerprint is refused without showing the
// right one.
func TestContactImport(t *testing.T) {
	e, err := New(fixedIdentity(t, 2), Config{}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	alice := fixedIdentity(t, 1)
	c1 := card(t, alice, "Alice")
	fp := mustParse(t, c1).Fingerprint()
	if _, err := e.AddContact("alice", c1, false); err != nil {
		t.Fatal(err)
	}
	if err := e.VerifyContact("alice", "AAAA-BBBB-CCCC-DDDD"); !errors.Is(err, ErrFingerprint) || strings.Contains(err.Error(), fp) {
		t.Fatalf("wrong fingerprint: %v", err)
	}
	if err := e.VerifyContact("alice", strings.ToLower(strings.ReplaceAll(fp, "-", " "))); err != nil {
		t.Fatal(err)
	}
	if r, err := e.AddContact("alice", c1, false); err != nil || !r.Unchanged || !r.Verified {
		t.Fatalf("same card: %+v %v", r, err)
	}
	if r, err := e.AddContact("alice", card(t, alice, "Alice B."), false); err != nil || !r.Verified || r.DisplayName != "Alice B." {
		t.Fatalf("new card, same identity: %+v %v", r, err)
	}
	other := card(t, fixedIdentity(t, 3), "Alice")
	if _, err := e.AddContact("alice", other, false); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("other identity without replace: %v", err)
	}
	r, err := e.AddContact("alice", other, true)
	if err != nil || !r.Replaced || r.Verified || r.OldFingerprint != fp {
		t.Fatalf("replace: %+v %v", r, err)
	}
	if _, err := e.AddContact("../x", other, false); !errors.Is(err, ErrContactName) {
		t.Fatalf("bad name: %v", err)
	}
}

func mustParse(t *testing.T, b []byte) *core.Card {
	c, err := core.ParseCard(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Incoming messages carry the sender's order and time.
func TestMessageSeqAndTime(t *testing.T) {
	n, a, b, _ := setup(t)
	for _, s := range []string{"1", "2", "3"} {
		talk(t, n, a, b, s)
		n.run(time.Second)
	}
	ms := b.take(EventMessage)
	for i, m := range ms {
		if i > 0 && m.Seq <= ms[i-1].Seq {
			t.Fatal("sequence numbers do not increase")
		}
		if d := m.At.Sub(m.SentAt); d < 0 || d > 2*time.Second {
			t.Fatalf("sent at %v, received at %v", m.SentAt, m.At)
		}
	}
}

// A message queued while the peer is away goes out as soon as a new
// session is up, not after its retransmission backoff.
func TestQueuedGoesAtOnceOnNewSession(t *testing.T) {
	n, a, b, _ := setup(t)
	talk(t, n, a, b, "before")
	st := b.e.State()
	b.down = true
	id := a.send(t, n.now, "bob", "while away")
	n.run(UDP.MaxRTO * 3) // the fragment's backoff has grown to its cap
	b.e.Close()
	e, _ := New(b.id, Config{}, st, n.now)
	e.AddLink("udp", UDP)
	b.e, b.down = e, false
	b.send(t, n.now, "alice", "back") // bob's handshake brings a new session
	start := n.now
	if !n.until(time.Minute, func() bool { return slices.Contains(a.states(id), Delivered) }) {
		t.Fatal("not delivered")
	}
	if d := n.now.Sub(start); d > 5*time.Second {
		t.Fatalf("delivered %v after the new session", d)
	}
}

// Bytes on air for one delivered 100-byte message on an established
// session, its acknowledgement included: at most 150 (the data packet and
// the ack packet).
func TestBytesPerMessage(t *testing.T) {
	n, a, b, r := setup(t)
	talk(t, n, a, b, "warm up")
	n.run(time.Second)
	before := len(r.pkts)
	bytesBefore := n.bytes
	talk(t, n, a, b, strings.Repeat("m", 100))
	n.run(time.Second)
	if pk := len(r.pkts) - before; pk != 2 {
		t.Fatalf("%d packets for one message", pk)
	}
	if on := n.bytes - bytesBefore; on > 150 {
		t.Fatalf("%d bytes on air for a 100-byte message and its acknowledgement", on)
	} else {
		t.Logf("%d bytes on air (data %d, ack %d)", on, len(r.pkts[before].Data), len(r.pkts[before+1].Data))
	}
}
