package tpm

import (
	"fmt"

	"github.com/awnumar/memguard"
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

// lockedAuth holds an auth value in memguard locked memory. A nil
// *lockedAuth is the empty auth value.
type lockedAuth struct{ b *memguard.LockedBuffer }

// newLockedAuth asks fn for name's auth value and moves it to locked memory,
// wiping fn's slice. memguard panics (after purging all its buffers) when
// mlock fails; that becomes an error here.
func newLockedAuth(fn func(string) ([]byte, error), name string) (a *lockedAuth, err error) {
	v, err := fn(name)
	defer core.Wipe(v)
	if err != nil {
		return nil, fmt.Errorf("tpm: auth value for %s: %w", name, err)
	}
	if len(v) == 0 {
		return nil, nil
	}
	if len(v) > 32 {
		// TPM2B_AUTH holds at most the name algorithm's digest size.
		return nil, fmt.Errorf("tpm: auth value for %s is longer than 32 bytes: %w", name, keystore.ErrKeystore)
	}
	defer func() {
		if r := recover(); r != nil {
			a, err = nil, fmt.Errorf("tpm: cannot lock memory for the auth value: %w", keystore.ErrKeystore)
		}
	}()
	b := memguard.NewBufferFromBytes(v)
	if b.Size() != len(v) {
		// memguard returns a null buffer when allocation fails.
		return nil, fmt.Errorf("tpm: cannot lock memory for the auth value: %w", keystore.ErrKeystore)
	}
	return &lockedAuth{b}, nil
}

// Bytes returns the value in locked memory (nil when empty). go-tpm sessions
// keep this slice rather than a copy.
func (a *lockedAuth) Bytes() []byte {
	if a == nil {
		return nil
	}
	return a.b.Bytes()
}

func (a *lockedAuth) Size() int {
	if a == nil {
		return 0
	}
	return a.b.Size()
}

// Destroy wipes and unlocks the value.
func (a *lockedAuth) Destroy() {
	if a != nil {
		a.b.Destroy()
	}
}

// protect runs f with core.Protect: the TPM commands that carry secrets
// leave plaintext copies in go-tpm's buffers, which only runtime/secret
// builds erase.
func protect(f func()) { core.Protect(f) }
