package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/onion"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// Fixed identities so that seeds stay meaningful across runs.
func fixedID(b byte) *memory.Identity {
	id, err := memory.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		panic(err)
	}
	return id
}

// validFrames returns one valid packet of every kind, for seeds.
func validFrames(tb testing.TB) (m1x, m1p, m2, tr, card []byte) {
	a, b := fixedID(1), fixedID(2)
	kx, _ := b.DHPublic(keystore.X25519)
	kp, _ := b.DHPublic(keystore.P256)
	in, m1x, err := core.Initiate(a, kx, []byte("hi"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	_, m1p, _ = core.Initiate(a, kp, nil, nil)
	_, _, m2, err = core.NewResponder(b, nil).Respond(m1x, []byte("yo"))
	if err != nil {
		tb.Fatal(err)
	}
	s, _, err := in.Finish(m2)
	if err != nil {
		tb.Fatal(err)
	}
	tr, _ = s.Encrypt([]byte("fuzz"))
	card, _ = core.NewCard(a, "seed")
	return
}

func FuzzPacket(f *testing.F) {
	m1x, m1p, m2, tr, card := validFrames(f)
	for _, s := range [][]byte{m1x, m1p, m2, tr, card, {0x82, 4, 0x40}, {0x9f}, {0x2f}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := core.PacketKind(b); err != nil && !errors.Is(err, core.ErrMalformed) && !errors.Is(err, core.ErrVersion) {
			t.Fatalf("untyped error %v", err)
		}
		core.PayloadSize(b, keystore.P256)
		core.Hint(b)
		if c, err := core.ParseCard(b); err == nil {
			if c2, err := core.ParseCard(c.Bytes()); err != nil || c2.Fingerprint() != c.Fingerprint() {
				t.Fatal("accepted card does not round trip")
			}
		} else if !errors.Is(err, core.ErrBadCard) {
			t.Fatalf("untyped card error %v", err)
		}
	})
}

// FuzzCard: a card the parser accepts re-encodes to itself, keeps its
// fingerprint, and carries either no onion address or a valid one; any other
// input gives ErrBadCard. The input is also tried as an onion address.
func FuzzCard(f *testing.F) {
	for _, s := range validCards(f) {
		f.Add(s)
	}
	f.Add([]byte(torOnions[0]))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := onion.Check(string(b)); err == nil {
			if len(b) != onion.Len || strings.ToLower(string(b)) != string(b) {
				t.Fatalf("accepted onion %q", b)
			}
		} else if !errors.Is(err, onion.ErrAddress) {
			t.Fatalf("untyped onion error %v", err)
		}
		c, err := core.ParseCard(b)
		if err != nil {
			if !errors.Is(err, core.ErrBadCard) {
				t.Fatalf("untyped card error %v", err)
			}
			return
		}
		if !bytes.Equal(c.Bytes(), b) {
			t.Fatal("accepted card is not its own bytes")
		}
		if c.Onion() != "" && onion.Check(c.Onion()) != nil {
			t.Fatalf("accepted card with onion %q", c.Onion())
		}
		c2, err := core.ParseCard(c.Bytes())
		if err != nil || c2.Fingerprint() != c.Fingerprint() || c2.Onion() != c.Onion() {
			t.Fatal("accepted card does not round trip")
		}
	})
}

// validCards: cards of both signature algorithms, with and without an onion address.
func validCards(tb testing.TB) [][]byte {
	var out [][]byte
	for _, id := range []keystore.Identity{fixedID(1), newP256Identity()} {
		for _, o := range []string{"", torOnions[1]} {
			c, err := core.NewCardWith(id, "seed", core.CardOptions{Onion: o})
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, c)
		}
	}
	return out
}

// FuzzRespond: an accepted message 1 yields a working session and is a
// replay from then on; a refused one returns a typed error and leaves the
// responder answering the genuine initiator as before.
func FuzzRespond(f *testing.F) {
	m1x, m1p, _, _, _ := validFrames(f)
	f.Add(m1x)
	f.Add(m1p)
	a, b := fixedID(1), fixedID(2)
	kx, _ := b.DHPublic(keystore.X25519)
	f.Fuzz(func(t *testing.T, m []byte) {
		r := core.NewResponder(b, nil)
		s, _, _, err := r.Respond(m, nil)
		if err == nil {
			defer s.Close()
			if _, err := s.Encrypt([]byte("x")); err != nil || s.Peer().IsZero() {
				t.Fatalf("accepted message 1 gave a broken session: %v", err)
			}
			if _, _, _, err := r.Respond(m, nil); !errors.Is(err, core.ErrReplay) {
				t.Fatalf("accepted message 1 not a replay the second time: %v", err)
			}
			return
		}
		if !typed(err, core.ErrMalformed, core.ErrVersion, core.ErrAuth, core.ErrReplay, core.ErrInvalidPublicKey,
			core.ErrUnknownPeer, core.ErrUnsupportedSuite) {
			t.Fatalf("untyped error %v", err)
		}
		in, m1, _ := core.Initiate(a, kx, []byte("genuine"), nil)
		rs, p, m2, err := r.Respond(m1, nil)
		if err != nil || string(p) != "genuine" {
			t.Fatalf("responder damaged by a refused message 1: %v", err)
		}
		defer rs.Close()
		is, _, err := in.Finish(m2)
		if err != nil {
			t.Fatalf("genuine handshake fails after a refused message 1: %v", err)
		}
		is.Close()
	})
}

func typed(err error, sentinels ...error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzDecrypt(f *testing.F) {
	_, _, _, tr, _ := validFrames(f)
	f.Add(tr)
	a, b := fixedID(1), fixedID(2)
	kx, _ := b.DHPublic(keystore.X25519)
	f.Fuzz(func(t *testing.T, m []byte) {
		in, m1, _ := core.Initiate(a, kx, nil, nil)
		rs, _, m2, err := core.NewResponder(b, nil).Respond(m1, nil)
		if err != nil {
			t.Fatal(err)
		}
		is, _, _ := in.Finish(m2)
		defer is.Close()
		defer rs.Close()
		rs.Decrypt(m)
		ct, _ := is.Encrypt([]byte("still works"))
		if pt, err := rs.Decrypt(ct); err != nil || string(pt) != "still works" {
			t.Fatalf("session damaged by fuzz input: %v", err)
		}
	})
}

// TestSeedCorpus: every committed seed is a valid frame of the current
// format, so the fuzzers start from packets the code accepts. After a format
// change, regenerate them with LORAMESH_WRITE_CORPUS=1.
func TestSeedCorpus(t *testing.T) {
	m1x, m1p, m2, tr, card := validFrames(t)
	seeds := map[string][][]byte{"FuzzPacket": {m1x, m1p, m2, tr, card}, "FuzzRespond": {m1x, m1p}, "FuzzDecrypt": {tr},
		"FuzzCard": validCards(t)[:2]}
	if os.Getenv("LORAMESH_WRITE_CORPUS") == "1" {
		for name, ss := range seeds {
			dir := filepath.Join("testdata", "fuzz", name)
			os.MkdirAll(dir, 0o755)
			for i, s := range ss {
				os.WriteFile(filepath.Join(dir, fmt.Sprint("valid-", i)), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", s), 0o644)
			}
		}
	}
	for name, ss := range seeds {
		for i := range ss {
			path := filepath.Join("testdata", "fuzz", name, fmt.Sprint("valid-", i))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: %v (regenerate with LORAMESH_WRITE_CORPUS=1)", path, err)
			}
			var seed []byte
			if _, err := fmt.Sscanf(strings.TrimPrefix(string(b), "go test fuzz v1\n"), "[]byte(%q)", &seed); err != nil {
				t.Fatalf("%s: not a seed file: %v", path, err)
			}
			want, _ := core.PacketKind(ss[i])
			if k, err := core.PacketKind(seed); err != nil || k != want {
				t.Fatalf("%s: kind %v (%v), want %v: regenerate with LORAMESH_WRITE_CORPUS=1", path, k, err, want)
			}
			if k := want; k == core.KindCard {
				if _, err := core.ParseCard(seed); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
			} else if _, ok := core.PayloadSize(seed, keystore.X25519); !ok {
				t.Fatalf("%s: not a framed packet", path)
			}
		}
	}
}
