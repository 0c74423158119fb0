package tpm

import (
	"fmt"

	"github.com/awnumar/memguard"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// lockedAuth holds an auth value in memguard locked memory. A nil
// *lockedAuth is the empty auth value.
type lockedAuth struct{ b *memguard.LockedBuffer }

// newLockedAuth asks fn for name's auth value and moves it to locked memory,
// wiping fn's slice. memguard panics, purging every buffer in the process,
// when mlock fails: the allocation runs under core.WithLockedHeadroom, which
// returns core.ErrLockedMemory instead.
func newLockedAuth(fn func(string) ([]byte, error), name string) (*lockedAuth, error) {
	v, err := fn(name)
	defer secret.Wipe(v)
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
	var b *memguard.LockedBuffer
	err = secret.WithHeadroom(authPages, func() error {
		b = memguard.NewBufferFromBytes(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: auth value: %w", err)
	}
	return &lockedAuth{b}, nil
}

// authPages: the buffer's page, memguard's three key buffers on first use,
// one to spare.
const authPages = 5

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
func protect(f func()) { secret.Do(f) }
