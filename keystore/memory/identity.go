// Package memory keeps identities in software: a 32-byte Ed25519 seed sealed
// at rest in locked memory and unsealed, into another locked slot, only for
// the length of one operation.
//
// Sealing at rest: every identity's seed is kept XORed with a mask
// HMAC-SHA256(process key, "loramesh seal v1" || nonce), where the process
// key is 32 random bytes in a locked page of its own (made on first use) and
// the nonce is the identity's own. A read of the slab page that holds a
// sealed seed (a stray buffer over-read, a partial memory disclosure) learns
// nothing without the key's page too. Unsealing is one stack-only HMAC, so
// nothing is kept open between operations and nothing runs in the
// background: an idle process with open identities never wakes up for them
// (memguard, which this package used before, re-keyed its coffer every
// 500 ms for the life of the process).
//
// Custody: every operation runs in secret.Do on stack buffers (Sign is
// written over filippo.io/edwards25519 because crypto/ed25519 copies the
// private key into heap objects of its own, which runtime/secret erases only
// when a garbage collection frees them). Close wipes the sealed seed; after
// it the process holds no copy of the seed or of anything derived from it
// (the custody tests scan the whole process to check).
package memory

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"filippo.io/edwards25519"
	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// SeedSize is the size of an identity seed.
const SeedSize = ed25519.SeedSize

// Identity is a software identity. Sign uses Ed25519; DH offers X25519 (the
// RFC 7748 key of the same seed) and a P-256 key derived from the seed.
// Its methods are safe for concurrent use.
type Identity struct {
	mu     sync.RWMutex // read: an operation in flight; write: Close
	sealed *[32]byte    // the seed XOR its mask, in the locked slab; nil once closed
	nonce  [16]byte
	pPub   keystore.PublicKey
	xPub   keystore.PublicKey
	edPub  [32]byte
}

var _ keystore.Identity = (*Identity)(nil)

// sealKey is the process's sealing key, in a locked page of its own.
var sealKey struct {
	mu  sync.Mutex
	buf *secret.Buffer
}

// withSealKey runs f with the sealing key, making it on first use.
func withSealKey(f func(k []byte)) error {
	sealKey.mu.Lock()
	defer sealKey.mu.Unlock()
	if sealKey.buf == nil {
		var k [32]byte
		defer secret.Wipe(k[:])
		if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
			return fmt.Errorf("memory: sealing key: %w", err)
		}
		b, err := secret.NewBuffer(k[:])
		if err != nil {
			return err
		}
		sealKey.buf = b
	}
	f(sealKey.buf.Bytes())
	return nil
}

var sealLabel = []byte("loramesh seal v1")

// xorMask XORs dst with the identity's mask; the mask lives on the stack
// and is wiped.
func (id *Identity) xorMask(dst *[32]byte) error {
	return withSealKey(func(k []byte) {
		var m [32]byte
		prim.HMAC(&m, k, sealLabel, id.nonce[:])
		for i := range dst {
			dst[i] ^= m[i]
		}
		secret.Wipe(m[:])
	})
}

// Generate makes a new identity from crypto/rand.
func Generate() (*Identity, error) {
	var seed [SeedSize]byte
	defer secret.Wipe(seed[:])
	if _, err := io.ReadFull(rand.Reader, seed[:]); err != nil {
		return nil, err
	}
	return FromSeed(seed[:])
}

// FromSeed builds the identity of a 32-byte seed. The caller's slice is
// copied, not kept, and not wiped (it is the caller's to wipe).
func FromSeed(seed []byte) (*Identity, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed must be %d bytes", keystore.ErrKeystore, SeedSize)
	}
	id := &Identity{}
	if _, err := io.ReadFull(rand.Reader, id.nonce[:]); err != nil {
		return nil, err
	}
	s, err := secret.New()
	if err != nil {
		return nil, err
	}
	copy(s[:], seed)
	secret.Do(func() {
		var sc [32]byte
		x25519Scalar(s[:], &sc)
		var e edwards25519.Scalar
		if _, err = e.SetBytesWithClamping(sc[:]); err != nil {
			return
		}
		var a edwards25519.Point
		a.ScalarBaseMult(&e)
		copy(id.edPub[:], a.Bytes())
		if id.xPub, err = keystore.ParsePublicKey(keystore.X25519, a.BytesMontgomery()); err != nil {
			return
		}
		e = edwards25519.Scalar{}
		secret.Wipe(sc[:])
		var k [32]byte
		if err = p256Scalar(s[:], &k); err == nil {
			id.pPub, err = prim.P256Base(&k)
		}
		secret.Wipe(k[:])
	})
	if err == nil {
		err = id.xorMask(s)
	}
	if err != nil {
		secret.Free(s)
		return nil, err
	}
	id.sealed = s
	return id, nil
}

// x25519Scalar is the X25519 private key of an Ed25519 seed: the first half
// of SHA-512(seed) (RFC 8032 5.1.5), clamped by X25519 itself (RFC 7748).
func x25519Scalar(seed []byte, out *[32]byte) {
	h := sha512.Sum512(seed)
	copy(out[:], h[:32])
	secret.Wipe(h[:])
}

// p256Scalar derives the identity's P-256 private key into out: the first
// counter c = 0, 1, ... for which k = HMAC-SHA256(seed, "loramesh p256
// identity v1" || c) is a valid scalar (1 <= k < n). One try fails with
// probability about 2^-32.
func p256Scalar(seed []byte, out *[32]byte) error {
	for c := byte(0); c < 16; c++ {
		prim.HMAC(out, seed, []byte("loramesh p256 identity v1"), []byte{c})
		if prim.P256ScalarValid(out) {
			return nil
		}
	}
	secret.Wipe(out[:])
	return errors.New("memory: no valid P-256 scalar")
}

// PublicBytes returns the 32-byte Ed25519 public key.
func (id *Identity) PublicBytes() []byte { return append([]byte(nil), id.edPub[:]...) }

// DeriveX25519 returns the public X25519 key of the same seed: the Montgomery
// form of the Ed25519 public key.
func (id *Identity) DeriveX25519() keystore.PublicKey { return id.xPub }

// Public returns the ed25519.PublicKey.
func (id *Identity) Public() crypto.PublicKey { return ed25519.PublicKey(id.PublicBytes()) }

// Suites: a memory identity holds keys for both.
func (id *Identity) Suites() []keystore.Suite {
	return []keystore.Suite{keystore.X25519, keystore.P256}
}

// DHPublic returns the static public key for s.
func (id *Identity) DHPublic(s keystore.Suite) (keystore.PublicKey, error) {
	switch s {
	case keystore.X25519:
		return id.xPub, nil
	case keystore.P256:
		return id.pPub, nil
	}
	return keystore.PublicKey{}, keystore.ErrUnsupportedSuite
}

// use runs f with the seed unsealed (see unseal).
func (id *Identity) use(f func(seed []byte) error) error {
	s, err := id.unseal()
	if err != nil {
		return err
	}
	defer id.release(s)
	return f(s[:])
}

// unseal returns the seed in a locked slot, holding off Close until release
// wipes the slot. The slot is a long-lived one (secret.New), so when locked
// memory runs out a memory identity's DH fails with ErrLockedMemory and the
// slab's reserve stays for established sessions.
func (id *Identity) unseal() (*[32]byte, error) {
	if id == nil {
		return nil, keystore.ErrClosed
	}
	id.mu.RLock()
	if id.sealed == nil {
		id.mu.RUnlock()
		return nil, keystore.ErrClosed
	}
	s, err := secret.New()
	if err == nil {
		*s = *id.sealed
		err = id.xorMask(s)
	}
	if err != nil {
		secret.Free(s)
		id.mu.RUnlock()
		return nil, err
	}
	return s, nil
}

func (id *Identity) release(s *[32]byte) {
	secret.Free(s)
	id.mu.RUnlock()
}

// maxStackMessage is the longest message Sign hashes from a stack buffer;
// longer ones go through a locked buffer of their own.
const maxStackMessage = 1024

// Sign signs message with Ed25519 (opts must be crypto.Hash(0): Ed25519
// signs the message itself). The signature is crypto/ed25519's, byte for
// byte (tested), computed on stack buffers only.
func (id *Identity) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != 0 {
		return nil, errors.New("memory: Ed25519 signs unhashed messages (use crypto.Hash(0))")
	}
	seed, err := id.unseal()
	if err != nil {
		return nil, err
	}
	defer id.release(seed)
	sig := make([]byte, 64)
	if len(message) <= maxStackMessage {
		secret.Do(func() {
			var scratch [64 + maxStackMessage]byte
			signEd25519((*[64]byte)(sig), seed, &id.edPub, message, scratch[:])
		})
		return sig, nil
	}
	buf, err := secret.NewBuffer(make([]byte, 64+len(message)))
	if err != nil {
		return nil, err
	}
	defer buf.Free()
	secret.Do(func() { signEd25519((*[64]byte)(sig), seed, &id.edPub, message, buf.Bytes()) })
	return sig, nil
}

// signEd25519 is RFC 8032 5.1.6 without a heap allocation: scratch (at
// least 64+len(msg) bytes, wiped here) holds prefix||msg, then R||A||msg.
func signEd25519(sig *[64]byte, seed *[32]byte, pub *[32]byte, msg, scratch []byte) {
	h := sha512.Sum512(seed[:])
	var s, r, k, S edwards25519.Scalar
	s.SetBytesWithClamping(h[:32])
	copy(scratch, h[32:])
	copy(scratch[32:], msg)
	rh := sha512.Sum512(scratch[:32+len(msg)])
	r.SetUniformBytes(rh[:])
	var R edwards25519.Point
	R.ScalarBaseMult(&r)
	var rb [32]byte
	copy(rb[:], R.Bytes())
	copy(scratch, rb[:])
	copy(scratch[32:], pub[:])
	copy(scratch[64:], msg)
	kh := sha512.Sum512(scratch[:64+len(msg)])
	k.SetUniformBytes(kh[:])
	S.MultiplyAdd(&k, &s, &r)
	copy(sig[:32], rb[:])
	copy(sig[32:], S.Bytes())
	secret.Wipe(h[:])
	secret.Wipe(rh[:])
	secret.Wipe(scratch[:64+len(msg)])
	s, r, S = edwards25519.Scalar{}, edwards25519.Scalar{}, edwards25519.Scalar{}
}

// DH computes the shared secret with peer into out.
func (id *Identity) DH(peer keystore.PublicKey, out *[32]byte) error {
	return id.use(func(seed []byte) (err error) {
		secret.Do(func() {
			switch peer.Suite() {
			case keystore.X25519:
				var sc, u [32]byte
				x25519Scalar(seed, &sc)
				copy(u[:], peer.Bytes())
				err = prim.X25519(out, &sc, &u)
				secret.Wipe(sc[:])
			case keystore.P256:
				var k [32]byte
				if err = p256Scalar(seed, &k); err == nil {
					err = prim.P256(out, &k, peer)
				}
				secret.Wipe(k[:])
			default:
				err = keystore.ErrUnsupportedSuite
			}
		})
		return err
	})
}

// Close wipes the sealed seed (after the operations in flight end), then
// runs a garbage collection, so that whatever heap temporaries the
// operations made inside secret.Do are erased now rather than at a
// collection that may never come on an idle device. Everything here keeps
// its temporaries on the stack, but that rests on the compiler's escape
// analysis (a -race build of crypto/sha512.Sum512 puts its output on the
// heap, and the custody test caught it); the collection does not. It costs
// one collection per Close, about a millisecond with a small heap. Further
// use gives keystore.ErrClosed. A nil *Identity closes without error.
func (id *Identity) Close() error {
	if id == nil {
		return nil
	}
	id.mu.Lock()
	first := id.sealed != nil
	secret.Free(id.sealed)
	id.sealed = nil
	id.mu.Unlock()
	if first {
		runtime.GC()
	}
	return nil
}

// withSeed runs f with the plain seed (for sealing it to a file).
func (id *Identity) withSeed(f func(seed []byte) error) error { return id.use(f) }
