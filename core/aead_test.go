package core_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"testing"

	"github.com/loramesh/loramesh-core/core"
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
