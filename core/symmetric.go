package core

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// Noise revision 34, section 5.2: the SymmetricState with SHA-256 and
// ChaChaPoly. ck and k are locked slots; h is a transcript hash, not secret,
// but wiped with the rest.
type symmetric struct {
	ck, k *[32]byte
	hasK  bool
	n     uint64
	h     [32]byte
}

func newSymmetric(protocol string) (*symmetric, error) {
	s := &symmetric{}
	if err := newKeys(&s.ck, &s.k); err != nil {
		return nil, err
	}
	// InitializeSymmetric: h = name padded to HASHLEN, or HASH(name).
	if len(protocol) <= 32 {
		copy(s.h[:], protocol)
	} else {
		s.h = sha256.Sum256([]byte(protocol))
	}
	*s.ck = s.h
	return s, nil
}

// clone copies the state into fresh slots so that a failed read can be
// dropped without touching the original.
func (s *symmetric) clone() (*symmetric, error) {
	c := &symmetric{hasK: s.hasK, n: s.n, h: s.h}
	if err := newKeys(&c.ck, &c.k); err != nil {
		return nil, err
	}
	*c.ck, *c.k = *s.ck, *s.k
	return c, nil
}

func (s *symmetric) free() {
	if s == nil {
		return
	}
	freeKey(s.ck)
	freeKey(s.k)
	s.ck, s.k = nil, nil
	Wipe(s.h[:])
}

// HMACSHA256 writes HMAC-SHA256(key, data...) into out, for keystores that
// derive keys; the key is at most 64 bytes, the data at most 96.
func HMACSHA256(out *[32]byte, key []byte, data ...[]byte) { hmacInto(out, key, data...) }

// hmacInto writes HMAC-SHA256(key, data...) into out (RFC 2104, key at most
// one block). Written out, with buffers on the stack, because crypto/hmac
// allocates eight heap objects a call, each of which runtime/secret must
// track and erase; a test checks it against crypto/hmac.
func hmacInto(out *[32]byte, key []byte, data ...[]byte) {
	var in [64 + 96]byte
	n := 64
	for _, d := range data {
		n += copy(in[n:], d)
	}
	if len(key) > 64 || n-64 != msgLen(data) {
		panic("loramesh: hmacInto input too long")
	}
	var outer [64 + 32]byte
	for i := range 64 {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		in[i], outer[i] = k^0x36, k^0x5c
	}
	inner := sha256.Sum256(in[:n])
	copy(outer[64:], inner[:])
	*out = sha256.Sum256(outer[:])
	Wipe(in[:])
	Wipe(outer[:])
	Wipe(inner[:])
}

func msgLen(d [][]byte) (n int) {
	for _, b := range d {
		n += len(b)
	}
	return n
}

// hkdf2 is Noise's HKDF(ck, ikm) with two outputs, written into out1, out2.
// out1 may alias ck.
func hkdf2(ck *[32]byte, ikm []byte, out1, out2 *[32]byte) {
	Protect(func() {
		var tmp [32]byte
		hmacInto(&tmp, ck[:], ikm)
		hmacInto(out1, tmp[:], []byte{1})
		hmacInto(out2, tmp[:], out1[:], []byte{2})
		Wipe(tmp[:])
	})
}

func (s *symmetric) mixHash(data []byte) {
	d := sha256.New()
	d.Write(s.h[:])
	d.Write(data)
	d.Sum(s.h[:0])
}

// mixKey: ck, temp_k = HKDF(ck, ikm, 2); k = temp_k; n = 0.
func (s *symmetric) mixKey(ikm *[32]byte) {
	hkdf2(s.ck, ikm[:], s.ck, s.k)
	s.hasK, s.n = true, 0
}

func nonce(n uint64) []byte {
	var b [chacha20poly1305.NonceSize]byte
	binary.LittleEndian.PutUint64(b[4:], n)
	return b[:]
}

// seal appends the ChaCha20-Poly1305 sealing of plaintext to dst; give dst
// the capacity so that nothing is allocated inside Protect.
func seal(key *[32]byte, n uint64, dst, ad, plaintext []byte) (out []byte) {
	Protect(func() { out = sealRaw(key, n, dst, ad, plaintext) })
	return out
}

func open(key *[32]byte, n uint64, ad, ciphertext []byte) (out []byte, err error) {
	out = make([]byte, 0, len(ciphertext))
	Protect(func() { out, err = openRaw(key, n, out, ad, ciphertext) })
	return out, err
}

func (s *symmetric) encryptAndHash(dst, plaintext []byte) []byte {
	if !s.hasK {
		out := append(dst, plaintext...)
		s.mixHash(plaintext)
		return out
	}
	dst = slices.Grow(dst, len(plaintext)+chacha20poly1305.Overhead)
	out := seal(s.k, s.n, dst, s.h[:], plaintext)
	s.n++
	s.mixHash(out[len(dst):])
	return out
}

func (s *symmetric) decryptAndHash(ciphertext []byte) ([]byte, error) {
	if !s.hasK {
		s.mixHash(ciphertext)
		return append([]byte(nil), ciphertext...), nil
	}
	p, err := open(s.k, s.n, s.h[:], ciphertext)
	if err != nil {
		return nil, err
	}
	s.n++
	s.mixHash(ciphertext)
	return p, nil
}

// split: temp_k1, temp_k2 = HKDF(ck, zerolen, 2), into c1 and c2.
func (s *symmetric) split(c1, c2 *[32]byte) {
	hkdf2(s.ck, nil, c1, c2)
}
