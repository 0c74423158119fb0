package memory_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// BenchmarkDH is one static DH, unsealing included; BenchmarkECDH is the
// scalar multiplication alone.
func BenchmarkDH(b *testing.B) {
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		b.Run(s.String(), func(b *testing.B) {
			a, _ := memory.Generate()
			p, _ := memory.Generate()
			pk, _ := p.DHPublic(s)
			var out [32]byte
			for b.Loop() {
				if err := a.DH(pk, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkECDH(b *testing.B) {
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	p, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for b.Loop() {
		k.ECDH(p.PublicKey())
	}
}

// BenchmarkSign is one Ed25519 signature of a contact-card-sized message,
// unsealing included; BenchmarkStdSign is crypto/ed25519 with the key ready.
func BenchmarkSign(b *testing.B) {
	a, _ := memory.Generate()
	msg := make([]byte, 200)
	for b.Loop() {
		if _, err := a.Sign(nil, msg, crypto.Hash(0)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStdSign(b *testing.B) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 200)
	for b.Loop() {
		ed25519.Sign(k, msg)
	}
}

// BenchmarkClose is FromSeed and Close: Close runs one garbage collection.
func BenchmarkClose(b *testing.B) {
	seed := make([]byte, 32)
	for b.Loop() {
		id, err := memory.FromSeed(seed)
		if err != nil {
			b.Fatal(err)
		}
		id.Close()
	}
}
