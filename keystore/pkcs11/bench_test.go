package pkcs11

import (
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/loramesh/loramesh-core/keystore"
)

func BenchmarkSign(b *testing.B) {
	ks := openKS(b, tokA)
	id := newIdentity(b, ks, "bench-sign", keystore.P256)
	d := sha256.Sum256([]byte("bench"))
	for b.Loop() {
		if _, err := id.Sign(nil, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDH(b *testing.B) {
	ks := openKS(b, tokA)
	id := newIdentity(b, ks, "bench-dh")
	for _, c := range []struct {
		s     keystore.Suite
		curve ecdh.Curve
	}{{keystore.P256, ecdh.P256()}, {keystore.X25519, ecdh.X25519()}} {
		b.Run(map[keystore.Suite]string{keystore.P256: "P256", keystore.X25519: "X25519"}[c.s], func(b *testing.B) {
			k, _ := c.curve.GenerateKey(rand.Reader)
			peer, err := keystore.FromECDH(k.PublicKey())
			if err != nil {
				b.Fatal(err)
			}
			var out [32]byte
			for b.Loop() {
				if err := id.DH(peer, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
