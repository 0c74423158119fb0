package prim_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"testing"

	"github.com/loramesh/loramesh-core/internal/prim"
	"golang.org/x/crypto/chacha20poly1305"
)

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
		nc, next := prim.NoiseNonce(uint64(n)), prim.NoiseNonce(uint64(n)+1)
		if !bytes.Equal(nc[:], nonce) {
			t.Fatal("NoiseNonce is not Noise's nonce encoding")
		}
		want := ref.Seal(nil, nonce, pt, ad)
		got := prim.Seal(&key, &nc, []byte("prefix"), ad, pt)
		if !bytes.Equal(got[6:], want) {
			t.Fatalf("seal differs at %d bytes", n)
		}
		back, err := prim.Open(&key, &nc, nil, ad, want)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("open fails at %d bytes", n)
		}
		for i := range want {
			bad := bytes.Clone(want)
			bad[i] ^= 1
			if _, err := prim.Open(&key, &nc, nil, ad, bad); err == nil {
				t.Fatal("forgery accepted")
			}
		}
		if _, err := prim.Open(&key, &next, nil, ad, want); err == nil {
			t.Fatal("wrong nonce accepted")
		}
	}
}
