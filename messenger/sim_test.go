package messenger

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// simNet is a simulated network with a fake clock: engines exchange packets
// through it with loss, duplication, reordering and delay; time jumps to the
// next delivery or engine deadline.
type simNet struct {
	t      testing.TB
	now    time.Time
	nodes  []*simNode
	air    []flight
	rng    *rand.Rand
	loss   float64 // probability a packet is lost
	dup    float64 // ... delivered twice
	delay  time.Duration
	jitter time.Duration // reordering: each packet's delay varies by up to this
	bytes  int           // bytes put on air
	frames int
	// tap, if set, sees every packet put on air (the attacker's antenna).
	tap func(from *simNode, p Packet)
	// cut, if set, is asked after each node's packets went out and before
	// its save: true crashes the node there (a power cut).
	cut func(s *simNode) bool
	// lose, if set, drops the packets it returns true for.
	lose func(from *simNode, p Packet) bool
}

type simNode struct {
	name   string
	id     keystore.Identity
	e      *Engine
	addr   Addr
	events []Event
	down   bool // switched off: hears nothing
	// A Durable node saves what Changed returns to disk at every step.
	cfg      Config
	profile  Profile
	disk     []byte
	diskFull bool // saves fail
}

// persist saves the node's state if a save is due, as a host does after
// every call.
func (s *simNode) persist() {
	if !s.cfg.Durable {
		return
	}
	if b, ok := s.e.Changed(); ok && !s.diskFull {
		s.disk = b
		s.e.Saved()
	}
}

// crash loses everything the node holds in memory (sessions, what it had
// not saved) and starts it again from its disk.
func (s *simNode) crash(t testing.TB, now time.Time) {
	s.e.Close()
	e, err := New(s.id, s.cfg, s.disk, now)
	if err != nil {
		t.Fatalf("%s: the saved state does not load: %v", s.name, err)
	}
	if err := e.AddLink("udp", s.profile); err != nil {
		t.Fatal(err)
	}
	s.e = e
}

type flight struct {
	at   time.Time
	from Addr
	to   *simNode
	data []byte
}

func newSim(t testing.TB, seed uint64) *simNet {
	return &simNet{t: t, now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(seed, 1)),
		delay: 50 * time.Millisecond}
}

func fixedIdentity(t testing.TB, b byte) keystore.Identity {
	id, err := memory.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	return id
}

// add makes a node on link "udp" (addressed by name) with profile p.
func (n *simNet) add(name string, id keystore.Identity, p Profile) *simNode {
	return n.addWith(name, id, p, Config{})
}

func (n *simNet) addWith(name string, id keystore.Identity, p Profile, cfg Config) *simNode {
	e, err := New(id, cfg, nil, n.now)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := e.AddLink("udp", p); err != nil {
		n.t.Fatal(err)
	}
	s := &simNode{name: name, id: id, e: e, addr: Addr{"udp", name}, cfg: cfg, profile: p}
	n.nodes = append(n.nodes, s)
	n.t.Cleanup(func() { s.e.Close() })
	return s
}

func card(t testing.TB, id keystore.Identity, name string) []byte {
	c, err := core.NewCard(id, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// befriend makes a and b contacts of each other, with each other's address.
func (n *simNet) befriend(a, b *simNode) {
	for _, x := range [][2]*simNode{{a, b}, {b, a}} {
		if _, err := x[0].e.AddContact(x[1].name, card(n.t, x[1].id, x[1].name), false); err != nil {
			n.t.Fatal(err)
		}
		if err := x[0].e.SetContactAddrs(x[1].name, x[1].addr); err != nil {
			n.t.Fatal(err)
		}
	}
}

func (n *simNet) node(a Addr) *simNode {
	for _, s := range n.nodes {
		if s.addr == a {
			return s
		}
	}
	return nil
}

// collect takes every node's output into the air and its events, then
// saves its state and takes what the save released, in the order capi
// does.
func (n *simNet) collect() {
	for _, s := range n.nodes {
		n.output(s)
		if n.cut != nil && n.cut(s) {
			s.crash(n.t, n.now)
			continue
		}
		s.persist()
		n.output(s)
	}
}

func (n *simNet) output(s *simNode) {
	pkts, evs := s.e.Poll()
	s.events = append(s.events, evs...)
	for _, p := range pkts {
		n.bytes += len(p.Data)
		n.frames++
		if n.tap != nil {
			n.tap(s, p)
		}
		to := n.node(p.To)
		if to == nil || n.rng.Float64() < n.loss || (n.lose != nil && n.lose(s, p)) {
			continue
		}
		copies := 1
		if n.rng.Float64() < n.dup {
			copies = 2
		}
		for range copies {
			d := n.delay
			if n.jitter > 0 {
				d += time.Duration(n.rng.Int64N(int64(n.jitter)))
			}
			n.air = append(n.air, flight{at: n.now.Add(d), from: s.addr, to: to, data: p.Data})
		}
	}
}

// inject puts a packet on air from an address of the attacker's choosing.
func (n *simNet) inject(from Addr, to *simNode, data []byte) {
	n.air = append(n.air, flight{at: n.now, from: from, to: to, data: data})
}

// step advances to the next event; false when nothing is left to happen
// before limit.
func (n *simNet) step(limit time.Time) bool {
	n.collect()
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, f := range n.air {
		at(f.at)
	}
	for _, s := range n.nodes {
		at(s.e.Deadline())
	}
	if next.IsZero() || next.After(limit) {
		n.now = limit
		return false
	}
	if next.After(n.now) {
		n.now = next
	}
	sort.SliceStable(n.air, func(i, j int) bool { return n.air[i].at.Before(n.air[j].at) })
	var later []flight
	for _, f := range n.air {
		if f.at.After(n.now) {
			later = append(later, f)
			continue
		}
		if !f.to.down {
			f.to.e.Receive(n.now, f.from, f.data)
		}
	}
	n.air = later
	for _, s := range n.nodes {
		if d := s.e.Deadline(); !d.IsZero() && !d.After(n.now) {
			s.e.Tick(n.now)
		}
	}
	n.collect() // as a host does after every call
	return true
}

// run steps until d of simulated time has passed.
func (n *simNet) run(d time.Duration) {
	limit := n.now.Add(d)
	for i := 0; n.step(limit); i++ {
		if i > 5_000_000 {
			for _, s := range n.nodes {
				n.t.Logf("%s at %v: deadline %v\n%s", s.name, n.now, s.e.Deadline(), s.e.describe())
				for _, c := range s.e.contacts {
					for _, d := range c.deadlines(s.e) {
						if !d.IsZero() && !d.After(n.now) {
							n.t.Logf("  %s due %v: pending %v blocked %v nextHS %v acks %d", c.name, d, c.pending != nil, c.blocked, c.nextHS, len(c.acks))
						}
					}
				}
			}
			n.t.Fatal("simulation does not settle")
		}
	}
	n.collect()
}

// until steps until cond holds or d passes.
func (n *simNet) until(d time.Duration, cond func() bool) bool {
	limit := n.now.Add(d)
	for !cond() {
		if !n.step(limit) {
			n.collect()
			return cond()
		}
	}
	return true
}

func (s *simNode) take(kind EventKind) []Event {
	var out []Event
	s.events = slices.DeleteFunc(s.events, func(e Event) bool {
		if e.Kind == kind {
			out = append(out, e)
			return true
		}
		return false
	})
	return out
}

func (s *simNode) states(id MsgID) []DeliveryState {
	var out []DeliveryState
	for _, e := range s.events {
		if e.Kind == EventDelivery && e.ID == id {
			out = append(out, e.State)
		}
	}
	return out
}

func (s *simNode) messages() []string {
	var out []string
	for _, e := range s.events {
		if e.Kind == EventMessage {
			out = append(out, e.Contact+": "+string(e.Text))
		}
	}
	return out
}

func (s *simNode) send(t testing.TB, now time.Time, to, text string) MsgID {
	id, err := s.e.Send(now, to, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTwoNodes(t *testing.T) {
	n := newSim(t, 1)
	a := n.add("alice", fixedIdentity(t, 1), UDP)
	b := n.add("bob", fixedIdentity(t, 2), UDP)
	n.befriend(a, b)
	id := a.send(t, n.now, "bob", "hello bob")
	n.run(10 * time.Second)
	if got := b.messages(); len(got) != 1 || got[0] != "alice: hello bob" {
		t.Fatalf("bob got %q\n%s", got, b.e.describe())
	}
	if got := a.states(id); !slices.Equal(got, []DeliveryState{Queued, Sent, Delivered}) {
		t.Fatalf("alice's message went %v", got)
	}
	id2 := b.send(t, n.now, "alice", "hi alice")
	n.run(10 * time.Second)
	if got := a.messages(); len(got) != 1 || got[0] != "bob: hi alice" {
		t.Fatalf("alice got %q", got)
	}
	if got := b.states(id2); !slices.Equal(got, []DeliveryState{Queued, Sent, Delivered}) {
		t.Fatalf("bob's message went %v", got)
	}
	if len(a.take(EventSession)) != 1 || len(b.take(EventSession)) != 1 {
		t.Fatal("one session each expected")
	}
	t.Log(fmt.Sprint(n.frames, " frames, ", n.bytes, " bytes"))
}
