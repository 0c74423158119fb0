package messenger

import (
	"fmt"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
)

// The lossy-link soak: three nodes over a link that loses 15 % of packets,
// duplicates 5 % and reorders them (up to 400 ms of jitter), with 255-byte
// frames, send thousands of messages of mixed sizes (1 byte to 4 KiB) in
// every direction. Every message is delivered exactly once or reported
// failed; none is reported delivered that was not; and afterwards nothing
// has grown without bound.
func TestLossySoak(t *testing.T) {
	msgs := 3000
	if testing.Short() {
		msgs = 300 // for a developer's quick run; `make test` runs it whole
	}
	n := newSim(t, 42)
	n.loss, n.dup, n.jitter = 0.15, 0.05, 400*time.Millisecond
	p := UDP
	p.FrameSize, p.RTO, p.MaxRTO, p.Deadline = 255, time.Second, 8*time.Second, 30*time.Minute
	p.RenewCount = 500 // renew sessions during the run, too
	nodes := []*simNode{n.add("a", fixedIdentity(t, 1), p), n.add("b", fixedIdentity(t, 2), p), n.add("c", fixedIdentity(t, 3), p)}
	for i, x := range nodes {
		for _, y := range nodes[i+1:] {
			n.befriend(x, y)
		}
	}
	type key struct {
		from string
		id   MsgID
	}
	sent := map[key]string{}            // what each message said
	want := map[string]map[string]int{} // receiver -> text -> copies expected
	sizes := []int{1, 10, 100, 200, 250, 700, 1500, 4096}
	for i := range msgs {
		from := nodes[i%3]
		to := nodes[(i+1+i/3%2)%3]
		text := fmt.Sprintf("%s->%s #%d ", from.name, to.name, i)
		for len(text) < sizes[i%len(sizes)] {
			text += "x"
		}
		id := from.send(t, n.now, to.name, text)
		sent[key{from.name, id}] = text
		if want[to.name] == nil {
			want[to.name] = map[string]int{}
		}
		want[to.name][text]++
		if i%10 == 9 {
			n.run(2 * time.Second) // a steady trickle, not one burst
		}
	}
	n.run(2 * time.Hour)

	delivered, failed := 0, 0
	for _, s := range nodes {
		for _, ev := range s.events {
			if ev.Kind != EventDelivery {
				continue
			}
			switch ev.State {
			case Delivered:
				delivered++
				text := sent[key{s.name, ev.ID}]
				to := ""
				for _, r := range nodes {
					if want[r.name][text] > 0 {
						to = r.name
					}
				}
				got := 0
				for _, m := range n.nodeByName(to).messages() {
					if m == s.name+": "+text {
						got++
					}
				}
				if got != 1 {
					t.Fatalf("reported delivered, received %d times: %.40q", got, text)
				}
			case Failed:
				failed++
				t.Logf("failed: %s", ev.Reason)
			}
		}
	}
	for _, r := range nodes {
		seen := map[string]int{}
		for _, ev := range r.events {
			if ev.Kind == EventMessage {
				seen[string(ev.Text)]++
			}
		}
		for text, c := range seen {
			if c > 1 {
				t.Fatalf("%s received %d copies of %.40q", r.name, c, text)
			}
			if want[r.name][text] != 1 {
				t.Fatalf("%s received a message it was not sent: %.40q", r.name, text)
			}
		}
	}
	if delivered+failed != msgs {
		t.Fatalf("%d delivered + %d failed of %d messages", delivered, failed, msgs)
	}
	if failed > msgs/100 {
		t.Fatalf("%d of %d messages failed", failed, msgs)
	}
	// Bounded state: no queue, no reassembly, no acks left; at most a
	// current and a replaced session per contact; hints indexed only for
	// those sessions.
	for _, s := range nodes {
		for _, c := range s.e.contacts {
			if len(c.queue) != 0 || len(c.partial) != 0 || len(c.acks) != 0 || len(c.old) > 1 || c.candidate != nil {
				t.Fatalf("%s/%s holds queue %d partial %d acks %d old %d", s.name, c.name, len(c.queue), len(c.partial), len(c.acks), len(c.old))
			}
			if len(c.delivered) > maxRemembered {
				t.Fatalf("%d delivered ids remembered", len(c.delivered))
			}
		}
		if len(s.e.sessions) > 2*2 || s.e.demux.Len() > 2*2*(32+32+64) {
			t.Fatalf("%s: %d sessions, %d hints", s.name, len(s.e.sessions), s.e.demux.Len())
		}
	}
	locked, inUse := core.LockedMemory()
	t.Logf("%d messages: %d delivered, %d failed; %d frames, %d bytes on air; locked memory %d (%d in use)",
		msgs, delivered, failed, n.frames, n.bytes, locked, inUse)
}

func (n *simNet) nodeByName(name string) *simNode {
	for _, s := range n.nodes {
		if s.name == name {
			return s
		}
	}
	return nil
}
