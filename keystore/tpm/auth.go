package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"sync"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// lockedAuth holds an auth value in locked memory of its own. A nil
// *lockedAuth is the empty auth value.
type lockedAuth struct{ b *secret.Buffer }

// newLockedAuth asks fn for name's auth value and moves it to locked memory,
// wiping fn's slice.
func newLockedAuth(fn func(string) ([]byte, error), name string) (*lockedAuth, error) {
	v, err := fn(name)
	defer secret.Wipe(v)
	if err != nil {
		return nil, fmt.Errorf("tpm: auth value for %s: %w", name, err)
	}
	// The TPM drops trailing zero octets of an auth value (TPM 2.0 part 1,
	// 19.6.4.3) when the key is created and when it checks an HMAC; go-tpm
	// keys its HMACs with the value as given, so a value ending in 0x00
	// would never match. Drop them here too.
	for len(v) > 0 && v[len(v)-1] == 0 {
		v = v[:len(v)-1]
	}
	if len(v) == 0 {
		return nil, nil
	}
	if bytes.IndexByte(v, 0) >= 0 {
		// Such values fail every check afterwards on swtpm through go-tpm
		// (the key is created, then the right value is refused); refuse them
		// before a key is made with one.
		return nil, fmt.Errorf("tpm: auth value for %s contains a zero byte, which is not supported: %w", name, keystore.ErrKeystore)
	}
	if len(v) > 32 {
		// TPM2B_AUTH holds at most the name algorithm's digest size.
		return nil, fmt.Errorf("tpm: auth value for %s is longer than 32 bytes: %w", name, keystore.ErrKeystore)
	}
	b, err := secret.NewBuffer(v)
	if err != nil {
		return nil, fmt.Errorf("tpm: auth value: %w", err)
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

func (a *lockedAuth) Size() int { return len(a.Bytes()) }

// Destroy wipes and unmaps the value.
func (a *lockedAuth) Destroy() {
	if a != nil {
		a.b.Free()
	}
}

// failedAuths remembers, per identity, keyed digests of the auth values the
// TPM rejected, so that a value that failed once is never offered again
// (each offer of a wrong value costs a dictionary-attack try, and a caller
// that hands back its stored value would lock every key out). The digests
// are HMAC-SHA256 under a random key, all in locked slots.
type failedAuths struct {
	mu   sync.Mutex
	refs int // the Keystore and each open Identity
	key  *[32]byte
	m    map[string][]*[32]byte
}

func (f *failedAuths) retain() {
	f.mu.Lock()
	f.refs++
	f.mu.Unlock()
}

// maxFailed bounds the digests kept per identity: the TPM locks out after a
// few failures anyway (3 on swtpm and the reference TPM).
const maxFailed = 16

func (f *failedAuths) digest(v []byte, out *[32]byte) error {
	if f.key == nil {
		k, err := secret.New()
		if err != nil {
			return err
		}
		if _, err := rand.Read(k[:]); err != nil {
			secret.Free(k)
			return err
		}
		f.key = k
	}
	secret.Do(func() { prim.HMAC(out, f.key[:], v) })
	return nil
}

// seen reports whether v failed before for name.
func (f *failedAuths) seen(name string, v []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m[name]) == 0 {
		return false
	}
	d, err := secret.NewTemp()
	if err != nil {
		return false
	}
	defer secret.Free(d)
	if f.digest(v, d) != nil {
		return false
	}
	for _, x := range f.m[name] {
		if subtle.ConstantTimeCompare(x[:], d[:]) == 1 {
			return true
		}
	}
	return false
}

// add records v as failed for name.
func (f *failedAuths) add(name string, v []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m[name]) >= maxFailed {
		return
	}
	d, err := secret.New()
	if err != nil {
		return
	}
	if f.digest(v, d) != nil {
		secret.Free(d)
		return
	}
	if f.m == nil {
		f.m = map[string][]*[32]byte{}
	}
	f.m[name] = append(f.m[name], d)
}

// release drops a reference; the last wipes every digest and the key.
func (f *failedAuths) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs--; f.refs > 0 {
		return
	}
	for _, ds := range f.m {
		for _, d := range ds {
			secret.Free(d)
		}
	}
	f.m = nil
	secret.Free(f.key)
	f.key = nil
}

// protect runs f in secret.Do: the TPM commands that carry secrets leave
// plaintext copies in go-tpm's buffers, which only runtime/secret builds
// erase.
func protect(f func()) { secret.Do(f) }
