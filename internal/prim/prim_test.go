package prim

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"testing"
)

func TestX25519AgainstRFC7748AndECDH(t *testing.T) {
	// RFC 7748 section 5.2, first vector.
	var k, u, out [32]byte
	hex.Decode(k[:], []byte("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"))
	hex.Decode(u[:], []byte("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))
	x25519(&out, &k, &u)
	if hex.EncodeToString(out[:]) != "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552" {
		t.Fatal("RFC 7748 vector")
	}
	for range 200 {
		rand.Read(k[:])
		p, _ := ecdh.X25519().NewPrivateKey(k[:])
		var base [32]byte
		if err := X25519Base(&base, &k); err != nil || !bytes.Equal(base[:], p.PublicKey().Bytes()) {
			t.Fatal("fixed-base X25519 differs from crypto/ecdh")
		}
		q, _ := ecdh.X25519().GenerateKey(rand.Reader)
		want, _ := p.ECDH(q.PublicKey())
		copy(u[:], q.PublicKey().Bytes())
		if err := X25519(&out, &k, &u); err != nil || !bytes.Equal(out[:], want) {
			t.Fatal("ladder differs from crypto/ecdh")
		}
	}
}

// Both paths (stack buffers up to a 64-byte key and 160 bytes of data,
// crypto/hmac beyond) agree with crypto/hmac, and no length panics.
func TestHMACAgainstCryptoHMAC(t *testing.T) {
	for _, kl := range []int{0, 1, 32, 64, 65, 200} {
		for _, n := range []int{0, 1, 7, 96, 159, 160, 161, 300} {
			key, msg := make([]byte, kl), make([]byte, n)
			rand.Read(key)
			rand.Read(msg)
			m := hmac.New(sha256.New, key)
			m.Write(msg[:n/2])
			m.Write(msg[n/2:])
			var out [32]byte
			HMAC(&out, key, msg[:n/2], msg[n/2:])
			if !bytes.Equal(out[:], m.Sum(nil)) {
				t.Fatalf("HMAC differs for a %d-byte key and %d bytes", kl, n)
			}
		}
	}
}

func TestP256ScalarValidBoundaries(t *testing.T) {
	n, _ := hex.DecodeString("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
	for _, c := range []struct {
		delta int
		want  bool
	}{{-1, true}, {0, false}, {1, false}} {
		var k [32]byte
		v := new(big.Int).Add(new(big.Int).SetBytes(n), big.NewInt(int64(c.delta)))
		v.FillBytes(k[:])
		if P256ScalarValid(&k) != c.want {
			t.Fatalf("n%+d: want %v", c.delta, c.want)
		}
	}
	var k [32]byte
	if P256ScalarValid(&k) {
		t.Fatal("zero accepted")
	}
	k[31] = 1
	if !P256ScalarValid(&k) {
		t.Fatal("one refused")
	}
	for range 1000 {
		rand.Read(k[:])
		_, err := ecdh.P256().NewPrivateKey(k[:])
		if P256ScalarValid(&k) != (err == nil) {
			t.Fatal("disagrees with crypto/ecdh")
		}
	}
}
