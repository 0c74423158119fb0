package core

import (
	"fmt"
	"io"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// Every secret the core holds is a 32-byte slot of locked memory
// (internal/secret). Each role has its own type, so that a chaining key
// passed where a message key belongs does not compile; the pointer inside
// costs nothing. Long-term private keys are never among them: static DH goes
// through keystore.Identity.

// ephemeralKey is a handshake's ephemeral private key.
type ephemeralKey struct{ p *[32]byte }

// chainingKey is Noise's ck, cipherKey its k (handshake only).
type (
	chainingKey struct{ p *[32]byte }
	cipherKey   struct{ p *[32]byte }
)

// chainKey is one direction's ratchet chain key, messageKey the key it
// yields for one message.
type (
	chainKey   struct{ p *[32]byte }
	messageKey struct{ p *[32]byte }
)

// newTempMessageKey takes a slot that may come from the reserve: a message
// key lives only while one message is sealed or opened.
func newTempMessageKey() (messageKey, error) {
	p, err := secret.NewTemp()
	return messageKey{p}, err
}

func (k ephemeralKey) free() { secret.Free(k.p) }
func (k chainingKey) free()  { secret.Free(k.p) }
func (k cipherKey) free()    { secret.Free(k.p) }
func (k chainKey) free()     { secret.Free(k.p) }
func (k messageKey) free()   { secret.Free(k.p) }

// step derives the message key at the chain's position into mk and advances
// the chain (docs/PROTOCOL.md §4): mk = HMAC(ck, 0x01), ck = HMAC(ck, 0x02).
func (ck chainKey) step(mk messageKey) {
	prim.HMAC(mk.p, ck.p[:], []byte{1})
	prim.HMAC(ck.p, ck.p[:], []byte{2})
}

// newEphemeral makes an ephemeral key pair from rand: for 25519 the private
// key is exactly the 32 bytes read, as in the Noise test vectors; for P-256,
// 32-byte candidates are read until one is a valid scalar (1 <= k < n).
func newEphemeral(s keystore.Suite, rand io.Reader) (ephemeralKey, keystore.PublicKey, error) {
	p, err := secret.New()
	if err != nil {
		return ephemeralKey{}, keystore.PublicKey{}, err
	}
	e := ephemeralKey{p}
	var pub keystore.PublicKey
	secret.Do(func() {
		switch s {
		case keystore.X25519:
			if _, err = io.ReadFull(rand, p[:]); err != nil {
				return
			}
			var u [32]byte
			if err = prim.X25519Base(&u, p); err == nil {
				pub, err = keystore.ParsePublicKey(s, u[:])
			}
		case keystore.P256:
			err = ErrInvalidPublicKey
			for range 8 {
				if _, err = io.ReadFull(rand, p[:]); err != nil {
					return
				}
				if prim.P256ScalarValid(p) {
					pub, err = prim.P256Base(p)
					return
				}
			}
		default:
			err = ErrUnsupportedSuite
		}
	})
	if err != nil {
		e.free()
		return ephemeralKey{}, pub, fmt.Errorf("generating ephemeral key: %w", err)
	}
	return e, pub, nil
}

// dh writes DH(e, peer) into out: the X25519 output or the P-256
// x-coordinate. Zero outputs are refused.
func (e ephemeralKey) dh(peer keystore.PublicKey, out *[32]byte) (err error) {
	secret.Do(func() {
		switch peer.Suite() {
		case keystore.X25519:
			var u [32]byte
			copy(u[:], peer.Bytes())
			err = prim.X25519(out, e.p, &u)
		case keystore.P256:
			err = prim.P256(out, e.p, peer)
		default:
			err = ErrUnsupportedSuite
		}
	})
	return err
}

// identityDH asks the keystore for a static-key DH and refuses an all-zero
// result itself, whatever the backend checks.
func identityDH(id keystore.Identity, peer keystore.PublicKey, out *[32]byte) (err error) {
	if err := id.DH(peer, out); err != nil {
		return err
	}
	secret.Do(func() {
		if secret.IsZero(out[:]) {
			err = prim.ErrZero
		}
	})
	return err
}

// counter numbers messages up to a hard limit.
type counter struct{ n, limit uint64 }

// next returns the next number, or ErrLimit once limit numbers were used.
func (c *counter) next() (uint64, error) {
	if c.n >= c.limit {
		return 0, ErrLimit
	}
	c.n++
	return c.n - 1, nil
}
