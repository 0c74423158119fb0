package messenger

import (
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
