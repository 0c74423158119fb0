package messenger

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

// Each attack of docs/PROTOCOL.md §6-§7, the way an attacker in radio range
// would send it.

// counting wraps an identity and counts its private-key operations.
type counting struct {
	keystore.Identity
	ops atomic.Int64
}

func (c *counting) DH(p keystore.PublicKey, out *[32]byte) error {
	c.ops.Add(1)
	return c.Identity.DH(p, out)
}

func (c *counting) Sign(r io.Reader, m []byte, o crypto.SignerOpts) ([]byte, error) {
	c.ops.Add(1)
	return c.Identity.Sign(r, m, o)
}

// recorder keeps what the attacker's antenna hears.
type recorder struct{ pkts []Packet }

func (r *recorder) kind(k core.Kind) [][]byte {
	var out [][]byte
	for _, p := range r.pkts {
		if kk, _ := core.PacketKind(p.Data); kk == k {
			out = append(out, p.Data)
		}
	}
	return out
}

func setup(t testing.TB) (*simNet, *simNode, *simNode, *recorder) {
	n := newSim(t, 7)
	a := n.add("alice", fixedIdentity(t, 1), UDP)
	b := n.add("bob", fixedIdentity(t, 2), UDP)
	n.befriend(a, b)
	r := &recorder{}
	n.tap = func(_ *simNode, p Packet) { r.pkts = append(r.pkts, p) }
	return n, a, b, r
}

var mallory = Addr{"udp", "mallory"}

// talk sends text from x to y and requires its delivery.
func talk(t testing.TB, n *simNet, x, y *simNode, text string) {
	t.Helper()
	id := x.send(t, n.now, y.name, text)
	if !n.until(time.Minute, func() bool { return slices.Contains(x.states(id), Delivered) }) {
		t.Fatalf("%s -> %s %q not delivered: %v\n%s", x.name, y.name, text, x.states(id), x.e.describe())
	}
}

// A recorded message 1 replayed, soon and much later, gets no second
// session, moves no address, and the working session goes on.
func TestReplayedMessage1(t *testing.T) {
	n, a, b, r := setup(t)
	talk(t, n, a, b, "one")
	cur := b.e.contacts["alice"].current
	m1 := r.kind(core.KindInitX25519)[0]
	for _, wait := range []time.Duration{time.Second, time.Hour} {
		n.run(wait)
		b.events = nil
		n.inject(mallory, b, m1)
		n.run(time.Second)
		c := b.e.contacts["alice"]
		if c.current != cur || c.candidate != nil || c.last != a.addr {
			t.Fatalf("after %v, the replay disturbed bob: %s last %v", wait, b.e.describe(), c.last)
		}
		if len(b.take(EventMessage)) != 0 {
			t.Fatal("the replay delivered something")
		}
		talk(t, n, a, b, "still works")
		talk(t, n, b, a, "both ways")
	}
}

// A message 1 replayed to a responder that restarted (empty replay cache,
// state from disk) is refused by its timestamp.
func TestReplayedMessage1AfterRestart(t *testing.T) {
	n, a, b, r := setup(t)
	talk(t, n, a, b, "one")
	state := b.e.State()
	m1 := r.kind(core.KindInitX25519)[0]
	b.e.Close()
	e, err := New(b.id, Config{}, state, n.now)
	if err != nil {
		t.Fatal(err)
	}
	e.AddLink("udp", UDP)
	b.e, b.events = e, nil
	n.inject(mallory, b, m1)
	n.run(time.Second)
	c := b.e.contacts["alice"]
	if c.candidate != nil || c.current != nil {
		t.Fatal("a replayed message 1 made a session after a restart")
	}
	if ev := b.take(EventDropped); len(ev) != 1 || ev[0].Reason != "replayed or stale handshake" {
		t.Fatalf("dropped events %v", ev)
	}
	// Alice's own next handshake (a fresh timestamp) is answered.
	talk(t, n, a, b, "after bob restarted")
}

// Message 1 relayed or replayed from another address: message 2 goes back
// there, but the contact's address does not move and nothing replaces the
// working session until a transport packet confirms it.
func TestAddressPoisoningByMessage1(t *testing.T) {
	n, a, b, r := setup(t)
	talk(t, n, a, b, "one")
	// Alice renews; Mallory relays her fresh message 1 first, and drops
	// the message 2 it gets back.
	cur := b.e.contacts["alice"].current
	b.e.contacts["alice"].last = a.addr
	a.down = true // alice's own copy is lost: only the relayed one arrives
	a.e.startHandshake(a.e.contacts["bob"], false)
	a.e.sendHandshake(a.e.contacts["bob"].pending)
	n.collect()
	m1 := r.kind(core.KindInitX25519)
	n.inject(mallory, b, m1[len(m1)-1])
	n.run(time.Second)
	c := b.e.contacts["alice"]
	if c.current != cur || c.candidate == nil || c.last != a.addr {
		t.Fatalf("relayed message 1: %s last %v", b.e.describe(), c.last)
	}
	a.down = false
	talk(t, n, b, a, "to the real alice")
}

// A genuine transport packet relayed later from another address is a
// duplicate: it moves nothing.
func TestAddressPoisoningByRelayedTransport(t *testing.T) {
	n, a, b, r := setup(t)
	talk(t, n, a, b, "one")
	a.events, b.events = nil, nil
	for _, p := range r.kind(core.KindTransport) {
		n.inject(mallory, b, p)
		n.inject(mallory, a, p)
	}
	n.run(time.Second)
	if b.e.contacts["alice"].last != a.addr || a.e.contacts["bob"].last != b.addr {
		t.Fatal("a relayed transport packet moved an address")
	}
	if len(b.take(EventAddress)) > 0 || len(b.take(EventMessage)) > 0 {
		t.Fatal("relayed packets were taken as new")
	}
	talk(t, n, b, a, "replies still go to alice")
}

// The other side of poisoning: a contact that really moves (a new port, a
// new host) is followed once a packet from there authenticates, and the
// replies go there; a message 1 from the new place is answered there.
func TestAddressFollowsGenuinePackets(t *testing.T) {
	n, a, b, _ := setup(t)
	talk(t, n, a, b, "one")
	b.take(EventAddress)
	a.addr = Addr{"udp", "alice-moved"}
	talk(t, n, a, b, "from the new place")
	if got := b.e.contacts["alice"].last; got != a.addr {
		t.Fatalf("bob still sends to %v", got)
	}
	if ev := b.take(EventAddress); len(ev) != 1 || ev[0].From != a.addr {
		t.Fatalf("address events: %v", ev)
	}
	talk(t, n, b, a, "reply reaches the new place")

	// After bob forgets his sessions, alice's message 1 from a third place
	// is answered there.
	st := b.e.State()
	b.e.Close()
	b.e, _ = New(b.id, Config{}, st, n.now)
	b.e.AddLink("udp", UDP)
	a.addr = Addr{"udp", "alice-third"}
	id := a.send(t, n.now, "bob", "after bob's restart")
	n.run(5 * time.Minute) // alice finds bob lost his session, and handshakes anew
	if !slices.Contains(a.states(id), Delivered) {
		t.Fatalf("after bob's restart: %v", a.states(id))
	}
	if got := b.e.contacts["alice"].last; got != a.addr {
		t.Fatalf("after a new handshake bob sends to %v", got)
	}
	talk(t, n, b, a, "and back")
}

// misbound is Mallory's identity with Alice's DH keys: a card that verifies
// (Mallory's own signature, Mallory's fingerprint) and lists keys Mallory
// does not hold.
type misbound struct {
	keystore.Identity                   // Mallory: signs
	dh                keystore.Identity // Alice: DH public keys only
}

func (m misbound) Suites() []keystore.Suite { return m.dh.Suites() }
func (m misbound) DHPublic(s keystore.Suite) (keystore.PublicKey, error) {
	return m.dh.DHPublic(s)
}

// The "aaron" attack: Bob imports Mallory's card carrying Alice's DH keys as
// "aaron". Alice's messages are not shown as aaron's, and Bob's messages to
// aaron do not reach Alice; importing it next to Alice's card is refused.
func TestMisbindingCard(t *testing.T) {
	n := newSim(t, 8)
	aliceID, malloryID := fixedIdentity(t, 1), fixedIdentity(t, 9)
	a := n.add("alice", aliceID, UDP)
	b := n.add("bob", fixedIdentity(t, 2), UDP)
	evil := card(t, misbound{malloryID, aliceID}, "aaron")
	if _, err := core.ParseCard(evil); err != nil {
		t.Fatalf("the misbinding card must verify for the attack to mean anything: %v", err)
	}
	// Bob holds only aaron; Alice holds Bob.
	if _, err := b.e.AddContact("aaron", evil, false); err != nil {
		t.Fatal(err)
	}
	b.e.SetContactAddrs("aaron", a.addr)
	a.e.AddContact("bob", card(t, b.id, "bob"), false)
	a.e.SetContactAddrs("bob", b.addr)
	id := a.send(t, n.now, "bob", "from alice")
	bid := b.send(t, n.now, "aaron", "for aaron")
	n.run(15 * time.Minute)
	if got := b.messages(); len(got) != 0 {
		t.Fatalf("bob showed %q", got)
	}
	if got := a.messages(); len(got) != 0 {
		t.Fatalf("alice received %q meant for aaron", got)
	}
	if st := a.states(id); slices.Contains(st, Delivered) || !slices.Contains(st, Failed) {
		t.Fatalf("alice's message went %v", st)
	}
	if st := b.states(bid); slices.Contains(st, Delivered) || !slices.Contains(st, Failed) {
		t.Fatalf("bob's message to aaron went %v", st)
	}
	// With Alice's real card Bob already holds, aaron is refused at import.
	b.e.RemoveContact("aaron")
	b.e.AddContact("alice", card(t, aliceID, "alice"), false)
	if _, err := b.e.AddContact("aaron", evil, false); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("importing aaron next to alice: %v", err)
	}
	if _, err := b.e.AddContact("me", card(t, b.id, "me"), false); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("importing bob's own card: %v", err)
	}
}

// Forged messages 2 for a pending handshake: without the hint they cost
// nothing; with a sniffed hint each costs one identity DH, and past the
// core's bound the engine starts afresh at once instead of waiting.
func TestForgedResponses(t *testing.T) {
	n := newSim(t, 9)
	aID := &counting{Identity: fixedIdentity(t, 1)}
	a := n.add("alice", aID, UDP)
	b := n.add("bob", fixedIdentity(t, 2), UDP)
	n.befriend(a, b)
	r := &recorder{}
	n.tap = func(s *simNode, p Packet) {
		r.pkts = append(r.pkts, p)
	}
	a.down = true // Mallory jams alice: the genuine message 2 never arrives
	a.send(t, n.now, "bob", "hello")
	n.run(100 * time.Millisecond)
	m2 := r.kind(core.KindResponse)
	if len(m2) == 0 {
		t.Fatal("bob did not answer")
	}
	a.down = false
	before := aID.ops.Load()
	for i := range 1000 { // wrong hints
		bad := bytes.Clone(m2[0])
		bad[1] ^= byte(1 + i%255)
		a.e.Receive(n.now, mallory, bad)
	}
	if aID.ops.Load() != before {
		t.Fatalf("forged hints cost %d identity operations", aID.ops.Load()-before)
	}
	first := a.e.contacts["bob"].pending
	for i := range 64 { // the right hint, a forged body
		bad := bytes.Clone(m2[0])
		bad[len(bad)-1-i%16] ^= 1
		a.e.Receive(n.now, mallory, bad)
	}
	if ops := aID.ops.Load() - before; ops > 64+2 {
		t.Fatalf("64 forged responses cost %d identity operations", ops)
	}
	if p := a.e.contacts["bob"].pending; p == nil || p == first {
		t.Fatal("the handshake was not restarted after the forgeries")
	}
	n.collect()
	if len(r.kind(core.KindInitX25519)) < 2 {
		t.Fatal("no fresh message 1 went out at once")
	}
	talk(t, n, a, b, "through")
}

// With no contacts a node answers nobody; a stranger's attempt costs one
// identity DH and is reported once with its key's fingerprint.
func TestEmptyAllowList(t *testing.T) {
	n := newSim(t, 10)
	bID := &counting{Identity: fixedIdentity(t, 2)}
	a := n.add("alice", fixedIdentity(t, 1), UDP)
	b := n.add("bob", bID, UDP)
	a.e.AddContact("bob", card(t, bID, "bob"), false)
	a.e.SetContactAddrs("bob", b.addr)
	r := &recorder{}
	n.tap = func(_ *simNode, p Packet) { r.pkts = append(r.pkts, p) }
	bID.ops.Store(0) // the card's signature above
	a.send(t, n.now, "bob", "hello stranger")
	n.run(20 * time.Second)
	if got := b.messages(); len(got) != 0 {
		t.Fatal("bob accepted a stranger's message")
	}
	st := b.take(EventStranger)
	k, _ := a.id.DHPublic(keystore.X25519)
	if len(st) != 1 || !st[0].Key.Equal(k) || st[0].Fingerprint != KeyFingerprint(k) || st[0].From != a.addr {
		t.Fatalf("stranger events %+v", st)
	}
	distinct := map[string]bool{}
	for _, p := range r.kind(core.KindInitX25519) {
		distinct[string(p)] = true
	}
	if ops := bID.ops.Load(); ops != int64(len(distinct)) {
		t.Fatalf("%d identity operations for %d distinct messages 1", ops, len(distinct))
	}
	if a.e.contacts["bob"].current != nil {
		t.Fatal("alice got a session")
	}
}

// Both ends open at the same moment: one session on both sides.
func TestSimultaneousOpen(t *testing.T) {
	n, a, b, _ := setup(t)
	ia := a.send(t, n.now, "bob", "from a")
	ib := b.send(t, n.now, "alice", "from b")
	n.run(30 * time.Second)
	if !slices.Contains(a.states(ia), Delivered) || !slices.Contains(b.states(ib), Delivered) {
		t.Fatalf("a %v b %v", a.states(ia), b.states(ib))
	}
	ca, cb := a.e.contacts["bob"], b.e.contacts["alice"]
	if ca.current == nil || cb.current == nil || ca.current.s.HandshakeHash() != cb.current.s.HandshakeHash() {
		t.Fatal("the two ends hold different sessions")
	}
}

// No packet exceeds the link's frame size; a 300-character message on
// 255-byte frames goes in fragments and arrives whole.
func TestFragmentsFitFrames(t *testing.T) {
	n := newSim(t, 11)
	p := LoRa
	p.DutyCycle = 0
	a := n.add("alice", fixedIdentity(t, 1), p)
	b := n.add("bob", fixedIdentity(t, 2), p)
	n.befriend(a, b)
	big := bytes.Repeat([]byte("ä"), 150) // 300 bytes of UTF-8
	n.tap = func(_ *simNode, pk Packet) {
		if len(pk.Data) > 255 {
			t.Fatalf("a %d-byte packet on a 255-byte link", len(pk.Data))
		}
	}
	id, _ := a.e.Send(n.now, "bob", big)
	n.run(10 * time.Minute)
	if got := b.take(EventMessage); len(got) != 1 || !bytes.Equal(got[0].Text, big) {
		t.Fatal("the long message did not arrive whole")
	}
	if !slices.Contains(a.states(id), Delivered) {
		t.Fatal("not reported delivered")
	}
}

// Over a radio (KISS) every node hears every packet and all share one link
// address: nothing may depend on addresses. Four nodes, each writing to
// each, with loss and duplication: every message is shown once, under its
// real sender, to its recipient only.
func TestSharedRadio(t *testing.T) {
	n := newSim(t, 31)
	n.radio, n.loss, n.dup = true, 0.1, 0.05
	var nodes []*simNode
	for i, name := range []string{"alice", "bob", "carol", "dave"} {
		s := n.add(name, fixedIdentity(t, byte(i+1)), LoRa)
		s.addr = Addr{"udp", ""}
		nodes = append(nodes, s)
	}
	for i, x := range nodes {
		for _, y := range nodes[i+1:] {
			n.befriend(x, y)
		}
	}
	want := map[string][]string{}
	for round := range 3 {
		for _, x := range nodes {
			for _, y := range nodes {
				if x != y {
					text := fmt.Sprintf("%s to %s, %d", x.name, y.name, round)
					x.send(t, n.now, y.name, text)
					want[y.name] = append(want[y.name], x.name+": "+text)
				}
			}
		}
		n.run(10 * time.Minute)
	}
	n.run(LoRa.Deadline)
	for _, s := range nodes {
		got := s.messages()
		slices.Sort(got)
		slices.Sort(want[s.name])
		if !slices.Equal(got, want[s.name]) {
			t.Fatalf("%s was shown %q, want %q", s.name, got, want[s.name])
		}
	}
}
