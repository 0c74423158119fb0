package core_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

// Issue 11 #15: the first bytes of a packet as docs/PROTOCOL.md §1 sorts
// them. Kinds of 24 or more (which a version 1 reader took for a
// non-canonical integer) have their own error naming the kind, never
// "non-canonical encoding".
func TestPacketKinds(t *testing.T) {
	for _, c := range []struct {
		p    []byte
		kind core.Kind
		want error
	}{
		{[]byte{0x21}, core.KindInitX25519, nil},
		{[]byte{0x22}, core.KindInitP256, nil},
		{[]byte{0x23}, core.KindResponse, nil},
		{[]byte{0x24}, core.KindTransport, nil},
		{[]byte{0x25}, 0, core.ErrVersion},
		{[]byte{0x2f}, 0, core.ErrVersion},
		{[]byte{0x83, 0x05}, core.KindCard, nil},
		{[]byte{0x82, 0x01}, 0, core.ErrVersion}, // version 1, kind 1
		{[]byte{0x83, 0x17}, 0, core.ErrVersion}, // version 1, kind 23
		{[]byte{0x83, 0x18, 0x18}, 0, core.ErrMalformed},
		{[]byte{0x82, 0x19, 0x01, 0x00}, 0, core.ErrMalformed},
		{[]byte{0x20}, 0, core.ErrMalformed},
		{[]byte{0x30}, 0, core.ErrMalformed},
		{[]byte{0x05}, 0, core.ErrMalformed},
		{nil, 0, core.ErrMalformed},
	} {
		k, err := core.PacketKind(c.p)
		if k != c.kind || !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%x: kind %#x, %v; want %#x, %v", c.p, byte(k), err, byte(c.kind), c.want)
		}
		if err != nil && strings.Contains(err.Error(), "non-canonical") {
			t.Errorf("%x: %v", c.p, err)
		}
	}
}

// Issue 11 #15: a card whose outer kind is not 5 is "not a card" whatever
// the kind (24 and beyond included), and an unknown suite number in field 5
// makes the whole card invalid even next to a good key and under a genuine
// signature (docs/PROTOCOL.md §5).
func TestCardKindsAndUnknownSuites(t *testing.T) {
	em, _ := cbor.CoreDetEncOptions().EncMode()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	card := func(kind uint64, dh map[int][]byte) []byte {
		body, err := em.Marshal(map[int]any{1: 1, 2: "Alice", 3: core.SigEd25519, 4: []byte(pub), 5: dh})
		if err != nil {
			t.Fatal(err)
		}
		c, err := em.Marshal([]any{kind, body, ed25519.Sign(priv, append([]byte("loramesh card v1"), body...))})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := map[int][]byte{1: x.PublicKey().Bytes()}
	if _, err := core.ParseCard(card(5, good)); err != nil {
		t.Fatalf("the control card: %v", err)
	}
	for _, k := range []uint64{0, 1, 4, 6, 23, 24, 25, 255, 256, 1 << 20} {
		_, err := core.ParseCard(card(k, good))
		if !errors.Is(err, core.ErrBadCard) || strings.Contains(err.Error(), "non-canonical") {
			t.Errorf("card kind %d: %v", k, err)
		}
	}
	for _, s := range []int{0, 3, 24, 255} {
		dh := map[int][]byte{1: x.PublicKey().Bytes(), s: x.PublicKey().Bytes()}
		if _, err := core.ParseCard(card(5, dh)); !errors.Is(err, core.ErrBadCard) {
			t.Errorf("card with suite %d next to suite 1 accepted: %v", s, err)
		}
	}
}

// Issue 11 #15, PROTOCOL.md §4: a forgery carrying a skipped number's hint
// fails to decrypt with the stored key and leaves it stored, so the genuine
// message still opens, once.
func TestFailedDecryptKeepsSkippedKey(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, nil)
	cts := send(t, is, 3)
	if _, err := rs.Decrypt(cts[2]); err != nil { // 0 and 1 are skipped
		t.Fatal(err)
	}
	for _, i := range []int{5, len(cts[0]) - 1} { // a ciphertext byte, a tag byte; the hint kept
		bad := bytes.Clone(cts[0])
		bad[i] ^= 0x80
		if _, err := rs.Decrypt(bad); !errors.Is(err, core.ErrAuth) {
			t.Fatalf("forgery with a skipped hint: %v", err)
		}
	}
	for _, i := range []int{0, 1} {
		if pt, err := rs.Decrypt(cts[i]); err != nil || len(pt) == 0 {
			t.Fatalf("skipped message %d after a forgery: %v", i, err)
		}
		if _, err := rs.Decrypt(cts[i]); !errors.Is(err, core.ErrReplay) {
			t.Fatalf("skipped message %d opened twice: %v", i, err)
		}
	}
}
