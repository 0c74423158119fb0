package messenger

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Two Durable nodes message each other over a lossy, duplicating,
// reordering link while either crashes at random moments (everything in
// memory lost, restarted from what it last saved). A message counts as
// accepted once the save after Send is done (when a host tells its user
// "queued"). In the end every accepted message is Delivered or Failed in
// its sender's history; every Delivered one was shown to the receiver
// exactly once; nothing was shown twice, and nothing shown was never
// accepted.
func TestCrashAtAnyMoment(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { crashRun(t, seed) })
	}
}

func crashRun(t *testing.T, seed uint64) {
	n := newSim(t, seed)
	n.loss, n.dup, n.jitter = 0.15, 0.05, 200*time.Millisecond
	cfg := Config{Durable: true, History: MaxHistory}
	a := n.addWith("alice", fixedIdentity(t, 1), UDP, cfg)
	b := n.addWith("bob", fixedIdentity(t, 2), UDP, cfg)
	n.befriend(a, b)
	peer := map[*simNode]*simNode{a: b, b: a}
	accepted := map[string]bool{}
	crashes, k := 0, 0
	n.cut = func(*simNode) bool {
		if n.rng.Float64() < 0.002 {
			crashes++
			return true
		}
		return false
	}
	limit := n.now.Add(10 * time.Minute)
	for n.now.Before(limit) {
		n.step(n.now.Add(100 * time.Millisecond))
		for _, s := range []*simNode{a, b} {
			switch r := n.rng.Float64(); {
			case r < 0.01:
				s.crash(t, n.now)
				crashes++
			case r < 0.04:
				k++
				text := fmt.Sprintf("%s-%d", s.name, k)
				if k%4 == 0 { // fragmented: 3 frames on UDP
					text += strings.Repeat(".", 3000)
				}
				if _, err := s.e.Send(n.now, peer[s].name, []byte(text)); errors.Is(err, ErrQueueFull) {
					continue // refused: the user is told, nothing is accepted
				} else if err != nil {
					t.Fatal(err)
				}
				if n.rng.Float64() < 0.2 { // power cut before the save
					s.crash(t, n.now)
					crashes++
					continue
				}
				s.persist()
				accepted[text] = true
			}
		}
	}
	n.run(30 * time.Minute) // no more crashes: everything settles

	shown := map[string]int{}
	for _, s := range []*simNode{a, b} {
		for _, e := range s.events {
			if e.Kind == EventMessage {
				shown[string(e.Text)]++
			}
		}
	}
	delivered, failed := 0, 0
	for _, s := range []*simNode{a, b} {
		for _, r := range s.e.History() {
			if !r.Out {
				continue
			}
			text := string(r.Text)
			if !accepted[text] {
				t.Fatalf("%s's history has %q, never accepted", s.name, text)
			}
			delete(accepted, text)
			switch r.State {
			case Delivered:
				delivered++
				if shown[text] != 1 {
					t.Fatalf("%q delivered, shown %d times", text, shown[text])
				}
			case Failed:
				failed++
			default:
				t.Fatalf("%q still %v after the network settled", text, r.State)
			}
		}
	}
	if len(accepted) > 0 {
		t.Fatalf("accepted, then lost from the sender's history: %v", slices.Sorted(func(yield func(string) bool) {
			for k := range accepted {
				if !yield(k) {
					return
				}
			}
		}))
	}
	for text, c := range shown {
		if c > 1 {
			t.Fatalf("%q shown %d times", text, c)
		}
	}
	if crashes < 50 || delivered < 100 {
		t.Fatalf("%d crashes, %d delivered: the run proves little", crashes, delivered)
	}
	t.Logf("%d crashes; %d messages delivered exactly once, %d failed, none twice", crashes, delivered, failed)
}

// A Durable engine sends nothing that depends on an unsaved change: the
// acknowledgement of a received message and the first transmission of a
// numbered message wait for Saved, and so does the message event.
func TestDurableWaitsForSave(t *testing.T) {
	n := newSim(t, 3)
	cfg := Config{Durable: true}
	a := n.addWith("alice", fixedIdentity(t, 1), UDP, cfg)
	b := n.addWith("bob", fixedIdentity(t, 2), UDP, cfg)
	n.befriend(a, b)
	n.run(time.Second)
	b.diskFull = true
	talkID := a.send(t, n.now, "bob", "hello")
	n.run(time.Minute)
	if len(b.take(EventMessage)) != 0 {
		t.Fatal("a message shown before the save recording it")
	}
	if slices.Contains(a.states(talkID), Delivered) {
		t.Fatal("acknowledged before the receiver saved it")
	}
	b.diskFull = false
	n.run(time.Minute)
	if got := b.take(EventMessage); len(got) != 1 {
		t.Fatalf("after the save: %d messages", len(got))
	}
	if !slices.Contains(a.states(talkID), Delivered) {
		t.Fatalf("not delivered after the save: %v", a.states(talkID))
	}
}

// History keeps both directions with delivery states, within its bounds,
// across a restart.
func TestHistory(t *testing.T) {
	n := newSim(t, 4)
	cfg := Config{Durable: true, History: 3, HistoryAge: time.Hour}
	a := n.addWith("alice", fixedIdentity(t, 1), UDP, cfg)
	b := n.addWith("bob", fixedIdentity(t, 2), UDP, cfg)
	n.befriend(a, b)
	for i := range 4 {
		talk(t, n, a, b, fmt.Sprint("m", i))
	}
	talk(t, n, b, a, "reply")
	a.crash(t, n.now)
	h := a.e.History()
	if len(h) != 3 || string(h[0].Text) != "m2" || string(h[2].Text) != "reply" || h[2].Out || !h[1].Out || h[1].State != Delivered {
		t.Fatalf("history %+v", h)
	}
	n.now = n.now.Add(2 * time.Hour)
	a.e.Tick(n.now)
	if h := a.e.History(); len(h) != 0 {
		t.Fatalf("kept past its age: %d", len(h))
	}
}

// A state that names a link the host no longer registers (a radio
// unplugged) loads, and its contact is reported as having no address.
func TestStateWithMissingLink(t *testing.T) {
	n, a, b, _ := setup(t)
	talk(t, n, a, b, "before")
	e, err := New(a.id, Config{}, a.e.State(), n.now)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.AddLink("kiss", LoRa)
	e.Tick(n.now)
	if _, err := e.Send(n.now, "bob", []byte("x")); err == nil {
		t.Fatal("sent on a link that does not exist")
	}
}

// Fragments the receiver acknowledged one by one are not saved: when it
// crashes before the last one arrives, the sender sends every fragment
// again in the new session, and the message arrives whole.
func TestFragmentsAfterReceiverCrash(t *testing.T) {
	n := newSim(t, 5)
	cfg := Config{Durable: true}
	a := n.addWith("alice", fixedIdentity(t, 1), UDP, cfg)
	b := n.addWith("bob", fixedIdentity(t, 2), UDP, cfg)
	n.befriend(a, b)
	talk(t, n, a, b, "hello")
	data := 0
	n.lose = func(from *simNode, p Packet) bool {
		if from == a && len(p.Data) > 200 {
			data++
			return data == 3 // the last fragment, the first time
		}
		return false
	}
	id := a.send(t, n.now, "bob", strings.Repeat("x", 3000))
	acked := func() []bool {
		if q := a.e.contacts["bob"].queue; len(q) > 0 {
			return q[0].acked
		}
		return nil
	}
	if !n.until(5*time.Second, func() bool { return slices.Equal(acked(), []bool{true, true, false}) }) {
		t.Fatalf("bob did not acknowledge fragments 0 and 1: %v", acked())
	}
	b.crash(t, n.now)
	n.run(5 * time.Minute)
	if !slices.Contains(a.states(id), Delivered) || len(b.take(EventMessage)) != 2 {
		t.Fatalf("after the receiver's crash: %v", a.states(id))
	}
}
