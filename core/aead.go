package core

import (
	"crypto/subtle"
	"encoding/binary"

	"github.com/loramesh/loramesh-core/internal/secret"
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/poly1305"
)

// ChaCha20-Poly1305 (RFC 8439, section 2.8) composed from x/crypto's
// ChaCha20 and Poly1305, whose keyed state stays on the stack. x/crypto's
// AEAD allocates its keyed state on the heap, and runtime/secret tracks and
// erases every heap allocation made inside Protect (about 700 ns each here,
// more than the AEAD itself). Tested against x/crypto's chacha20poly1305.

// aeadInit returns the cipher positioned at block 1 and the Poly1305 key
// (block 0), for key and Noise nonce n.
func aeadInit(key *[32]byte, n uint64, polyKey *[32]byte) *chacha20.Cipher {
	c, _ := chacha20.NewUnauthenticatedCipher(key[:], nonce(n))
	c.XORKeyStream(polyKey[:], polyKey[:])
	c.SetCounter(1)
	return c
}

func aeadTag(tag *[tagSize]byte, polyKey *[32]byte, ad, ct []byte) {
	var pad [16]byte
	var lens [16]byte
	binary.LittleEndian.PutUint64(lens[:8], uint64(len(ad)))
	binary.LittleEndian.PutUint64(lens[8:], uint64(len(ct)))
	m := poly1305.New(polyKey)
	m.Write(ad)
	m.Write(pad[:(16-len(ad)%16)%16])
	m.Write(ct)
	m.Write(pad[:(16-len(ct)%16)%16])
	m.Write(lens[:])
	m.Sum(tag[:0])
}

// sealRaw appends the sealing of plaintext to dst; give dst the capacity
// (len(plaintext)+16) so that nothing is allocated.
func sealRaw(key *[32]byte, n uint64, dst, ad, plaintext []byte) []byte {
	var polyKey [32]byte
	c := aeadInit(key, n, &polyKey)
	out := append(dst, make([]byte, len(plaintext)+tagSize)...)
	ct := out[len(dst) : len(dst)+len(plaintext)]
	c.XORKeyStream(ct, plaintext)
	aeadTag((*[tagSize]byte)(out[len(dst)+len(plaintext):]), &polyKey, ad, ct)
	secret.Wipe(polyKey[:])
	return out
}

// openRaw authenticates ciphertext, then appends its plaintext to dst.
func openRaw(key *[32]byte, n uint64, dst, ad, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < tagSize {
		return nil, ErrAuth
	}
	ct, tag := ciphertext[:len(ciphertext)-tagSize], ciphertext[len(ciphertext)-tagSize:]
	var polyKey [32]byte
	c := aeadInit(key, n, &polyKey)
	var want [tagSize]byte
	aeadTag(&want, &polyKey, ad, ct)
	secret.Wipe(polyKey[:])
	if subtle.ConstantTimeCompare(want[:], tag) != 1 {
		return nil, ErrAuth
	}
	out := append(dst, make([]byte, len(ct))...)
	c.XORKeyStream(out[len(dst):], ct)
	return out, nil
}
