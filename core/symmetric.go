package core

import (
	"crypto/sha256"
	"slices"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// symmetric is Noise's SymmetricState (revision 34, section 5.2) with SHA-256
// and ChaChaPoly. ck and k are locked slots; h is a transcript hash, not
// secret, but wiped with the rest.
type symmetric struct {
	ck   chainingKey
	k    cipherKey
	hasK bool
	n    uint64
	h    [32]byte
}

func newSymmetric(protocol string) (*symmetric, error) {
	var ck, k *[32]byte
	if err := secret.NewN(&ck, &k); err != nil {
		return nil, err
	}
	s := &symmetric{ck: chainingKey{ck}, k: cipherKey{k}}
	// InitializeSymmetric: h = name padded to HASHLEN, or HASH(name).
	if len(protocol) <= 32 {
		copy(s.h[:], protocol)
	} else {
		s.h = sha256.Sum256([]byte(protocol))
	}
	*ck = s.h
	return s, nil
}

// clone copies the state into fresh slots so that a failed read can be
// dropped without touching the original. The copy runs in secret.Do: it
// passes through registers.
func (s *symmetric) clone() (*symmetric, error) {
	var ck, k *[32]byte
	if err := secret.NewN(&ck, &k); err != nil {
		return nil, err
	}
	secret.Do(func() { *ck, *k = *s.ck.p, *s.k.p })
	return &symmetric{ck: chainingKey{ck}, k: cipherKey{k}, hasK: s.hasK, n: s.n, h: s.h}, nil
}

func (s *symmetric) free() {
	if s == nil {
		return
	}
	s.ck.free()
	s.k.free()
	s.ck, s.k = chainingKey{}, cipherKey{}
	secret.Wipe(s.h[:])
}

// hkdf2 is Noise's HKDF(ck, ikm) with two outputs, written into out1, out2.
// out1 may alias ck.
func hkdf2(ck *[32]byte, ikm []byte, out1, out2 *[32]byte) {
	secret.Do(func() {
		var tmp [32]byte
		prim.HMAC(&tmp, ck[:], ikm)
		prim.HMAC(out1, tmp[:], []byte{1})
		prim.HMAC(out2, tmp[:], out1[:], []byte{2})
		secret.Wipe(tmp[:])
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
	hkdf2(s.ck.p, ikm[:], s.ck.p, s.k.p)
	s.hasK, s.n = true, 0
}

// mixDH runs one DH token of the pattern (ee, es, se) with our ephemeral key:
// MixKey(DH(e, peer)), the DH output held in a temporary slot.
func (s *symmetric) mixDH(e ephemeralKey, peer keystore.PublicKey) error {
	return s.mixWith(func(out *[32]byte) error { return e.dh(peer, out) })
}

// mixIdentityDH runs one DH token with the identity's static key (es for the
// responder, ss, se for the initiator) through the keystore.
func (s *symmetric) mixIdentityDH(id keystore.Identity, peer keystore.PublicKey) error {
	return s.mixWith(func(out *[32]byte) error { return identityDH(id, peer, out) })
}

func (s *symmetric) mixWith(dh func(*[32]byte) error) error {
	out, err := secret.NewTemp()
	if err != nil {
		return err
	}
	defer secret.Free(out)
	if err := dh(out); err != nil {
		return err
	}
	s.mixKey(out)
	return nil
}

// seal appends the ChaCha20-Poly1305 sealing of plaintext to dst; give dst
// the capacity so that nothing is allocated inside secret.Do.
func seal(key *[32]byte, n uint64, dst, ad, plaintext []byte) (out []byte) {
	nc := prim.NoiseNonce(n)
	secret.Do(func() { out = prim.Seal(key, &nc, dst, ad, plaintext) })
	return out
}

func open(key *[32]byte, n uint64, ad, ciphertext []byte) (out []byte, err error) {
	out = make([]byte, 0, len(ciphertext))
	nc := prim.NoiseNonce(n)
	secret.Do(func() { out, err = prim.Open(key, &nc, out, ad, ciphertext) })
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

func (s *symmetric) encryptAndHash(dst, plaintext []byte) []byte {
	if !s.hasK {
		out := append(dst, plaintext...)
		s.mixHash(plaintext)
		return out
	}
	dst = slices.Grow(dst, len(plaintext)+tagSize)
	out := seal(s.k.p, s.n, dst, s.h[:], plaintext)
	s.n++
	s.mixHash(out[len(dst):])
	return out
}

func (s *symmetric) decryptAndHash(ciphertext []byte) ([]byte, error) {
	if !s.hasK {
		s.mixHash(ciphertext)
		return append([]byte(nil), ciphertext...), nil
	}
	p, err := open(s.k.p, s.n, s.h[:], ciphertext)
	if err != nil {
		return nil, err
	}
	s.n++
	s.mixHash(ciphertext)
	return p, nil
}

// split: temp_k1, temp_k2 = HKDF(ck, zerolen, 2), into c1 and c2.
func (s *symmetric) split(c1, c2 chainKey) {
	hkdf2(s.ck.p, nil, c1.p, c2.p)
}
