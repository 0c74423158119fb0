package tpm

import (
	"crypto"
	"crypto/sha256"
	"testing"
)

// Costs on the in-process simulator with an auth value (salted sessions).

func BenchmarkDH(b *testing.B) {
	ks := simKeystore(b, "1234")
	id := generate(b, ks, "bench")
	_, peer := softPeer(b)
	var z [32]byte
	for b.Loop() {
		if err := id.DH(peer, &z); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	ks := simKeystore(b, "1234")
	id := generate(b, ks, "bench")
	d := sha256.Sum256(nil)
	for b.Loop() {
		if _, err := id.Sign(nil, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

// The same on swtpm over TCP: closer to a real TPM's round trips.

func BenchmarkSwtpmDH(b *testing.B) {
	s := startSwtpm(b, false)
	ks := s.open(b, b.TempDir(), "1234")
	defer ks.Close()
	id := generate(b, ks, "bench")
	_, peer := softPeer(b)
	var z [32]byte
	for b.Loop() {
		if err := id.DH(peer, &z); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSwtpmSign(b *testing.B) {
	s := startSwtpm(b, false)
	ks := s.open(b, b.TempDir(), "1234")
	defer ks.Close()
	id := generate(b, ks, "bench")
	d := sha256.Sum256(nil)
	for b.Loop() {
		if _, err := id.Sign(nil, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
