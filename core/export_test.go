package core

import (
	"encoding/binary"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/internal/prim"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/loramesh/loramesh-core/keystore"
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

// ResignCard returns card with body fields set (or added) and signed again by
// id, so tests can make validly signed cards that break the body's rules.
func ResignCard(t testing.TB, id keystore.Identity, card []byte, set map[int]any) []byte {
	var p cardPacket
	var body map[int]any
	if err := cbor.Unmarshal(card, &p); err != nil {
		t.Fatal(err)
	}
	if err := cbor.Unmarshal(p.Body, &body); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		body[k] = v
	}
	b, err := encMode.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := SigningKeyOf(id)
	if p.Sig, err = sign(id, key.alg, cardContext, b); err != nil {
		t.Fatal(err)
	}
	p.Body = b
	out, _ := encMode.Marshal(p)
	return out
}
