package core_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"golang.org/x/crypto/chacha20poly1305"
	"math/big"
	"testing"

	"github.com/loramesh/loramesh-core/core"
)

func TestX25519AgainstRFC7748AndECDH(t *testing.T) {
	// RFC 7748 section 5.2, first vector.
	var k, u, out [32]byte
	hex.Decode(k[:], []byte("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"))
	hex.Decode(u[:], []byte("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))
	core.X25519Ladder(&out, &k, &u)
	if hex.EncodeToString(out[:]) != "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552" {
		t.Fatal("RFC 7748 vector")
	}
	for range 200 {
		rand.Read(k[:])
		p, _ := ecdh.X25519().NewPrivateKey(k[:])
		var base [32]byte
		if err := core.X25519Base(&base, &k); err != nil || !bytes.Equal(base[:], p.PublicKey().Bytes()) {
			t.Fatal("fixed-base X25519 differs from crypto/ecdh")
		}
		q, _ := ecdh.X25519().GenerateKey(rand.Reader)
		want, _ := p.ECDH(q.PublicKey())
		copy(u[:], q.PublicKey().Bytes())
		if err := core.X25519(&out, &k, &u); err != nil || !bytes.Equal(out[:], want) {
			t.Fatal("ladder differs from crypto/ecdh")
		}
	}
}

func TestHMACAgainstCryptoHMAC(t *testing.T) {
	for n := 0; n <= 96; n += 7 {
		key, msg := make([]byte, 32), make([]byte, n)
		rand.Read(key)
		rand.Read(msg)
		m := hmac.New(sha256.New, key)
		m.Write(msg[:n/2])
		m.Write(msg[n/2:])
		var out [32]byte
		core.HMACSHA256(&out, key, msg[:n/2], msg[n/2:])
		if !bytes.Equal(out[:], m.Sum(nil)) {
			t.Fatalf("HMAC differs for %d bytes", n)
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
		if core.P256ScalarValid(&k) != c.want {
			t.Fatalf("n%+d: want %v", c.delta, c.want)
		}
	}
	var k [32]byte
	if core.P256ScalarValid(&k) {
		t.Fatal("zero accepted")
	}
	k[31] = 1
	if !core.P256ScalarValid(&k) {
		t.Fatal("one refused")
	}
	for range 1000 {
		rand.Read(k[:])
		_, err := ecdh.P256().NewPrivateKey(k[:])
		if core.P256ScalarValid(&k) != (err == nil) {
			t.Fatal("disagrees with crypto/ecdh")
		}
	}
}

func TestAEADAgainstXCrypto(t *testing.T) {
	for n := 0; n < 300; n += 13 {
		var key [32]byte
		rand.Read(key[:])
		pt, ad := make([]byte, n), make([]byte, n%40)
		rand.Read(pt)
		rand.Read(ad)
		ref, _ := chacha20poly1305.New(key[:])
		nonce := make([]byte, 12)
		binary.LittleEndian.PutUint64(nonce[4:], uint64(n))
		want := ref.Seal(nil, nonce, pt, ad)
		got := core.Seal(&key, uint64(n), []byte("prefix"), ad, pt)
		if !bytes.Equal(got[6:], want) {
			t.Fatalf("seal differs at %d bytes", n)
		}
		back, err := core.Open(&key, uint64(n), ad, want)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("open fails at %d bytes", n)
		}
		for i := range want {
			bad := bytes.Clone(want)
			bad[i] ^= 1
			if _, err := core.Open(&key, uint64(n), ad, bad); err == nil {
				t.Fatal("forgery accepted")
			}
		}
		if _, err := core.Open(&key, uint64(n)+1, ad, want); err == nil {
			t.Fatal("wrong nonce accepted")
		}
	}
}
