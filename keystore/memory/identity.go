// Package memory keeps identities in software: a 32-byte Ed25519 seed sealed
// in a memguard Enclave and opened into a LockedBuffer only for the length of
// one burst of operations (see HoldOpen). Importing memguard disables core dumps for the whole
// process (its init sets RLIMIT_CORE to 0); this package never calls
// memguard.CatchInterrupt, so signal handling stays the host's.
package memory

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/awnumar/memguard"
	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// SeedSize is the size of an identity seed.
const SeedSize = ed25519.SeedSize

// Identity is a software identity. Sign uses Ed25519; DH offers X25519 (the
// RFC 7748 key of the same seed) and a P-256 key derived from the seed.
type Identity struct {
	seed  *memguard.Enclave
	pPub  keystore.PublicKey
	xPub  keystore.PublicKey
	edPub ed25519.PublicKey

	mu     sync.Mutex
	open   *memguard.LockedBuffer // the seed while operations keep coming
	users  int
	timer  *time.Timer
	closed bool
}

// HoldOpen is how long the seed stays open in its LockedBuffer after the
// last operation. Opening an enclave costs memguard a fresh mmap, mlock and
// two mprotects (85-165 us here, more than a scalar multiplication), so a
// burst of operations (a handshake needs two, a gateway many) shares one
// opening; a node at rest holds only the sealed enclave.
const HoldOpen = 2 * time.Second

var _ keystore.Identity = (*Identity)(nil)

// memguard panics, purging every buffer in the process, when mlock fails.
// Every memguard allocation here runs under core.WithLockedHeadroom, which
// first checks that the pages it needs can be locked: an output buffer and
// the coffer key's view (two pages), its three key buffers on first use,
// and one to spare.
const memguardPages = 6

func withLocked(e *memguard.Enclave, f func(b []byte) error) error {
	b, err := allocLocked(e)
	if err != nil {
		return err
	}
	if b == nil {
		return f(nil)
	}
	defer b.Destroy()
	return f(b.Bytes())
}

// allocLocked opens e into a new LockedBuffer; for e == nil it only checks
// the headroom, for callers that make their own buffer next.
func allocLocked(e *memguard.Enclave) (b *memguard.LockedBuffer, err error) {
	err = secret.WithHeadroom(memguardPages, func() error {
		if e == nil {
			return nil
		}
		var oerr error
		if b, oerr = e.Open(); oerr != nil {
			return fmt.Errorf("%w: opening enclave: %v", keystore.ErrKeystore, oerr)
		}
		return nil
	})
	return b, err
}

// sealNew copies src into a new enclave, under the headroom check.
func sealNew(src []byte) (e *memguard.Enclave, err error) {
	err = secret.WithHeadroom(memguardPages, func() error {
		b := memguard.NewBuffer(len(src))
		b.Copy(src)
		e = b.Seal()
		return nil
	})
	return e, err
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
	sealed, err := sealNew(seed)
	if err != nil {
		return nil, err
	}
	id := &Identity{seed: sealed}
	err = withLocked(id.seed, func(s []byte) (err error) {
		secret.Do(func() {
			priv := ed25519.NewKeyFromSeed(s)
			id.edPub = append(ed25519.PublicKey(nil), priv[32:]...)
			secret.Wipe(priv)
			var sc, u [32]byte
			x25519Scalar(s, &sc)
			if err = prim.X25519Base(&u, &sc); err != nil {
				return
			}
			secret.Wipe(sc[:])
			if id.xPub, err = keystore.ParsePublicKey(keystore.X25519, u[:]); err != nil {
				return
			}
			var k [32]byte
			if err = p256Scalar(s, &k); err == nil {
				id.pPub, err = prim.P256Base(&k)
			}
			secret.Wipe(k[:])
		})
		return err
	})
	if err != nil {
		return nil, err
	}
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
func (id *Identity) PublicBytes() []byte { return append([]byte(nil), id.edPub...) }

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

// use runs f with the seed, opening the enclave if it is not open yet.
func (id *Identity) use(f func(seed []byte) error) error {
	b, err := id.acquire()
	if err != nil {
		return err
	}
	defer id.release()
	return f(b.Bytes())
}

func (id *Identity) acquire() (*memguard.LockedBuffer, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.closed {
		return nil, keystore.ErrClosed
	}
	if id.open == nil {
		b, err := allocLocked(id.seed)
		if err != nil {
			return nil, err
		}
		id.open = b
		id.timer = time.AfterFunc(HoldOpen, id.expire)
	} else {
		id.timer.Reset(HoldOpen)
	}
	id.users++
	return id.open, nil
}

func (id *Identity) release() {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.users--
	if id.closed && id.users == 0 {
		id.destroy()
	}
}

func (id *Identity) expire() {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.users > 0 {
		id.timer.Reset(HoldOpen)
		return
	}
	id.destroy()
}

// destroy wipes and unmaps the open seed; mu is held.
func (id *Identity) destroy() {
	if id.open != nil {
		id.timer.Stop()
		id.open.Destroy()
		id.open = nil
	}
}

// Sign signs message with Ed25519 (opts must be crypto.Hash(0): Ed25519
// signs the message itself).
func (id *Identity) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) (sig []byte, err error) {
	if opts.HashFunc() != 0 {
		return nil, errors.New("memory: Ed25519 signs unhashed messages (use crypto.Hash(0))")
	}
	err = id.use(func(seed []byte) error {
		secret.Do(func() {
			priv := ed25519.NewKeyFromSeed(seed)
			sig = ed25519.Sign(priv, message)
			secret.Wipe(priv)
		})
		return nil
	})
	return sig, err
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

// Close wipes the open seed (at once, or when the last operation in flight
// ends). The sealed enclave is left to the garbage collector: memguard has no
// way to destroy one, and it cannot be opened once its coffer key is gone.
func (id *Identity) Close() error {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.closed = true
	if id.users == 0 {
		id.destroy()
	}
	return nil
}

// withSeed runs f with the plain seed (for sealing it to a file).
func (id *Identity) withSeed(f func(seed []byte) error) error { return id.use(f) }
