package core

import "golang.org/x/crypto/chacha20poly1305"

// Test hooks: raw packet framing and the Noise view of a fresh session.

func EncodePacket(kind Kind, body []byte) []byte { return encodePacket(kind, body) }

func DecodePacket(b []byte) (Kind, []byte, error) { return decodeAny(b) }

// NoiseSeal encrypts as a Noise CipherState keyed with the session's first
// send key (nonce 0, empty ad): valid only before the first Encrypt.
func (s *Session) NoiseSeal(pt []byte) []byte {
	a, _ := chacha20poly1305.New(s.k.send.p[:])
	return a.Seal(nil, nonce(0), pt, nil)
}

func (s *Session) NoiseOpen(ct []byte) ([]byte, error) {
	a, _ := chacha20poly1305.New(s.k.recv.ck.p[:])
	return a.Open(nil, nonce(0), ct, nil)
}

func Reconstruct(next uint64, t uint16) uint64 { return reconstruct(next, t) }

func Seal(key *[32]byte, n uint64, dst, ad, pt []byte) []byte { return sealRaw(key, n, dst, ad, pt) }

func Open(key *[32]byte, n uint64, ad, ct []byte) ([]byte, error) {
	return openRaw(key, n, nil, ad, ct)
}
