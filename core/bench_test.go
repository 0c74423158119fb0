package core_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/flynn/noise"
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/chacha20poly1305"
)

// Benchmarks sit beside their references: flynn/noise and the bare scalar
// multiplications (make bench prints the ratios).

func BenchmarkHandshake(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) {
			x, y := mustIdentity(b), mustIdentity(b)
			kx, ky := dhPub(b, x, s), dhPub(b, y, s)
			_ = kx
			r := core.NewResponder(y, nil)
			b.ReportAllocs()
			for b.Loop() {
				in, m1, err := core.Initiate(x, ky, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				rs, _, m2, err := r.Respond(m1, nil)
				if err != nil {
					b.Fatal(err)
				}
				is, _, err := in.Finish(m2)
				if err != nil {
					b.Fatal(err)
				}
				is.Close()
				rs.Close()
			}
		})
	}
}

// BenchmarkScalarMults is the floor: the ten DH operations of an IK
// handshake (two key generations, eight DHs) with keys made beforehand.
func BenchmarkScalarMults(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) {
			c := ecdh.X25519()
			if s == keystore.P256 {
				c = ecdh.P256()
			}
			k, _ := c.GenerateKey(rand.Reader)
			p, _ := c.GenerateKey(rand.Reader)
			pub := p.PublicKey()
			for b.Loop() {
				for range 10 {
					if _, err := k.ECDH(pub); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func BenchmarkFlynnHandshake(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) {
			cs := flynnSuite(s)
			ki, _ := cs.GenerateKeypair(rand.Reader)
			kr, _ := cs.GenerateKeypair(rand.Reader)
			for b.Loop() {
				hi, _ := noise.NewHandshakeState(noise.Config{CipherSuite: cs, Pattern: noise.HandshakeIK, Initiator: true, StaticKeypair: ki, PeerStatic: kr.Public})
				hr, _ := noise.NewHandshakeState(noise.Config{CipherSuite: cs, Pattern: noise.HandshakeIK, StaticKeypair: kr})
				m1, _, _, _ := hi.WriteMessage(nil, nil)
				if _, _, _, err := hr.ReadMessage(nil, m1); err != nil {
					b.Fatal(err)
				}
				m2, _, _, _ := hr.WriteMessage(nil, nil)
				if _, _, _, err := hi.ReadMessage(nil, m2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var sizes = []int{16, 100, 200, 1024}

func BenchmarkTransport(b *testing.B) {
	is, rs := handshake(b, mustIdentity(b), mustIdentity(b), keystore.X25519, &core.Config{MaxMessages: 1 << 62})
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			msg := make([]byte, n)
			b.SetBytes(int64(n))
			for b.Loop() {
				ct, err := is.Encrypt(msg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rs.Decrypt(ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFlynnCipherState(b *testing.B) {
	cs := flynnSuite(keystore.X25519)
	k := make([]byte, 32)
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var key [32]byte
			copy(key[:], k)
			enc, dec := cs.Cipher(key), cs.Cipher(key)
			msg := make([]byte, n)
			b.SetBytes(int64(n))
			var i uint64
			for b.Loop() {
				ct := enc.Encrypt(nil, i, nil, msg)
				if _, err := dec.Decrypt(nil, i, nil, ct); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkChaCha20Poly1305(b *testing.B) {
	a, _ := chacha20poly1305.New(make([]byte, 32))
	nonce := make([]byte, 12)
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			msg := make([]byte, n)
			b.SetBytes(int64(n))
			for b.Loop() {
				ct := a.Seal(nil, nonce, msg, nil)
				if _, err := a.Open(nil, nonce, ct, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
