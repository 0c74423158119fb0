package core

import (
	"encoding/binary"

	"github.com/loramesh/loramesh-core/internal/prim"
	"golang.org/x/crypto/chacha20poly1305"
)

// Test hooks: raw packet framing and the Noise view of a fresh session.

// Frame puts a Noise message behind its kind byte, and the hint a message 2
// carries; NoiseMessage takes both off again.
func Frame(kind Kind, hint uint32, noiseMsg []byte) []byte {
	p := []byte{byte(kind)}
	if kind == KindResponse {
		p = binary.BigEndian.AppendUint32(p, hint)
	}
	return append(p, noiseMsg...)
}

func NoiseMessage(p []byte) []byte {
	if Kind(p[0]) == KindResponse {
		return p[1+HintSize:]
	}
	return p[1:]
}

// NoiseSeal encrypts as a Noise CipherState keyed with the session's first
// send key (nonce 0, empty ad): valid only before the first Encrypt.
func (s *Session) NoiseSeal(pt []byte) []byte {
	a, _ := chacha20poly1305.New(s.k.send.p[:])
	n := prim.NoiseNonce(0)
	return a.Seal(nil, n[:], pt, nil)
}

func (s *Session) NoiseOpen(ct []byte) ([]byte, error) {
	a, _ := chacha20poly1305.New(s.k.recv.ck.p[:])
	n := prim.NoiseNonce(0)
	return a.Open(nil, n[:], ct, nil)
}
