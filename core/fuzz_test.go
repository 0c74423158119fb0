package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/loramesh/loramesh-core/core"
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
	for _, s := range [][]byte{m1x, m1p, m2, tr, card, {0x82, 4, 0x40}, {0x9f}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		core.PacketKind(b)
		if _, _, err := core.DecodePacket(b); err != nil && !errors.Is(err, core.ErrMalformed) && !errors.Is(err, core.ErrVersion) {
			t.Fatalf("untyped error %v", err)
		}
		if c, err := core.ParseCard(b); err == nil {
			if c2, err := core.ParseCard(c.Bytes()); err != nil || c2.Fingerprint() != c.Fingerprint() {
				t.Fatal("accepted card does not round trip")
			}
		} else if !errors.Is(err, core.ErrBadCard) {
			t.Fatalf("untyped card error %v", err)
		}
	})
}

func FuzzRespond(f *testing.F) {
	m1x, m1p, _, _, _ := validFrames(f)
	f.Add(m1x)
	f.Add(m1p)
	b := fixedID(2)
	f.Fuzz(func(t *testing.T, m []byte) {
		r := core.NewResponder(b, nil)
		if s, _, _, err := r.Respond(m, nil); err == nil {
			s.Close()
		}
	})
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

// TestWriteSeedCorpus regenerates testdata/fuzz when LORAMESH_WRITE_CORPUS=1.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("LORAMESH_WRITE_CORPUS") != "1" {
		return // a generator, not a check: run by hand after a format change
	}
	m1x, m1p, m2, tr, card := validFrames(t)
	for name, seeds := range map[string][][]byte{
		"FuzzPacket": {m1x, m1p, m2, tr, card}, "FuzzRespond": {m1x, m1p}, "FuzzDecrypt": {tr},
	} {
		dir := filepath.Join("testdata", "fuzz", name)
		os.MkdirAll(dir, 0o755)
		for i, s := range seeds {
			os.WriteFile(filepath.Join(dir, fmt.Sprint("valid-", i)), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", s), 0o644)
		}
	}
}
