package memory_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/awnumar/memguard"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// BenchmarkDH is one static DH, enclave opening included; BenchmarkECDH is
// the scalar multiplication alone and BenchmarkEnclaveOpen memguard's part.
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

func BenchmarkEnclaveOpen(b *testing.B) {
	e := memguard.NewEnclaveRandom(32)
	for b.Loop() {
		l, err := e.Open()
		if err != nil {
			b.Fatal(err)
		}
		l.Destroy()
	}
}
