package messenger

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
)

// FuzzFrames: any transport plaintext either parses into frames that encode
// back to the same frames, or is refused with ErrProtocol; nothing panics.
func FuzzFrames(f *testing.F) {
	for _, fr := range []frames{
		{data: &dataFrame{seq: 1, count: 1, time: 3, text: []byte("hi")}},
		{acks: []ackFrame{{seq: 7}, {seq: 8, orig: 99, partial: []byte{5}}}, confirm: true,
			data: &dataFrame{seq: 2, orig: 5, idx: 1, count: 3, text: []byte("frag")}},
		{confirm: true},
	} {
		f.Add(fr.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrames(b)
		if err != nil {
			return
		}
		again, err := decodeFrames(fr.encode())
		if err != nil || !reflect.DeepEqual(again, fr) {
			t.Fatalf("frames do not round trip: %v", err)
		}
	})
}

// FuzzReceive: whatever arrives from anywhere, an engine with working
// sessions neither panics nor loses them: alice and bob still talk after.
func FuzzReceive(f *testing.F) {
	n, a, b, r := setup(f)
	talk(f, n, a, b, "seed")
	for _, p := range r.pkts {
		f.Add(p.Data, true)
	}
	f.Add([]byte{byte(core.KindTransport), 1, 2, 3, 4}, false)
	f.Fuzz(func(t *testing.T, pkt []byte, toBob bool) {
		n, a, b, _ := setup(t)
		talk(t, n, a, b, "before")
		target := a
		if toBob {
			target = b
		}
		target.e.Receive(n.now, mallory, pkt)
		target.e.Receive(n.now, target.addr, pkt)
		n.run(time.Second)
		talk(t, n, a, b, "after")
		talk(t, n, b, a, "and back")
	})
}

// FuzzState: a state file's plaintext (once opened, it is still only as
// trustworthy as the disk it came from) never panics the engine; what New
// accepts saves and loads back to the same state.
func FuzzState(f *testing.F) {
	n, a, b, _ := setup(f)
	talk(f, n, a, b, "seed")
	b.down = true
	a.send(f, n.now, "bob", "queued while bob is away")
	n.run(time.Minute)
	f.Add(a.e.State())
	f.Add(b.e.State())
	f.Fuzz(func(t *testing.T, st []byte) {
		cfg := Config{Durable: true, History: 100}
		e, err := New(a.id, cfg, st, n.now)
		if err != nil {
			return
		}
		saved := e.State()
		e.Close()
		again, err := New(a.id, cfg, saved, n.now)
		if err != nil {
			t.Fatalf("a state New accepted does not load once saved: %v", err)
		}
		defer again.Close()
		if !bytes.Equal(again.State(), saved) {
			t.Fatal("a saved state changes when loaded and saved again")
		}
	})
}
