package replay

import (
	"testing"

	"github.com/loramesh/loramesh-core/keystore"
)

// Boundary table for the message-1 replay cache: depth 16 per initiator,
// 2 initiators remembered.
func TestReplayCacheBoundaries(t *testing.T) {
	c := New(2)
	a, b, x := peerKey(1), peerKey(2), peerKey(3)
	tag := func(p, i byte) Tag { return TagOf([]byte{p, i}) }
	for i := range byte(16) {
		if !c.Add(tag(1, i), a) {
			t.Fatalf("tag %d of a refused", i)
		}
	}
	if c.Add(tag(1, 15), a) || !c.Seen(tag(1, 0)) {
		t.Fatal("a's 16 tags not all remembered")
	}
	c.Add(tag(1, 16), a) // a's 17th evicts only a's first
	if c.Seen(tag(1, 0)) || !c.Seen(tag(1, 1)) {
		t.Fatal("depth 16 not kept")
	}
	c.Add(tag(2, 0), b)
	if !c.Seen(tag(1, 1)) || !c.Seen(tag(2, 0)) {
		t.Fatal("two initiators fit")
	}
	c.Add(tag(1, 17), a) // a is now the most recent
	c.Add(tag(3, 0), x)  // a third initiator evicts the least recent: b
	if c.Seen(tag(2, 0)) || !c.Seen(tag(1, 17)) || !c.Seen(tag(3, 0)) {
		t.Fatal("least recently seen initiator not the one evicted")
	}
}

func peerKey(b byte) keystore.PublicKey {
	u := make([]byte, 32)
	u[0] = b
	k, _ := keystore.ParsePublicKey(keystore.X25519, u)
	return k
}
