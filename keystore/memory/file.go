package memory

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/awnumar/memguard"
	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/internal/files"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Params are the argon2id costs stored in each identity file.
type Params struct {
	Time    uint32 // passes
	Memory  uint32 // KiB
	Threads uint8
}

// DefaultParams is RFC 9106's second recommended option (64 MiB, 3 passes,
// 4 lanes). x/crypto's argon2 computes every lane on a goroutine of its own,
// which runtime/secret does not cover: those stacks hold blocks derived
// from the passphrase (not the passphrase), left for the runtime to reuse.
var DefaultParams = Params{Time: 3, Memory: 64 << 10, Threads: 4}

// Bounds on parameters read from a file, so a crafted file cannot make Open
// allocate gigabytes or spin for minutes.
const (
	maxMemory = 1 << 20 // 1 GiB
	maxTime   = 16
)

// identityFile is the CBOR identity file (docs/PROTOCOL.md, "Identity file").
type identityFile struct {
	Version int    `cbor:"1,keyasint"`
	Params  Params `cbor:"2,keyasint,toarray"`
	Salt    []byte `cbor:"3,keyasint"`
	Nonce   []byte `cbor:"4,keyasint"`
	Sealed  []byte `cbor:"5,keyasint"`
}

const fileAD = "loramesh identity v1"

var decMode, _ = cbor.DecOptions{
	DupMapKey:         cbor.DupMapKeyEnforcedAPF,
	IndefLength:       cbor.IndefLengthForbidden,
	TagsMd:            cbor.TagsForbidden,
	ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	MaxNestedLevels:   4,
}.DecMode()

// fileKey derives the file key from the passphrase into a locked buffer.
func fileKey(pass *memguard.Enclave, salt []byte, p Params, f func(key []byte) error) error {
	return withLocked(pass, func(pw []byte) error {
		var err error
		secret.Do(func() {
			k := argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, chacha20poly1305.KeySize)
			err = f(k)
			secret.Wipe(k)
		})
		return err
	})
}

// Save writes id to path sealed under the passphrase, atomically, mode 0600.
// An existing file is never overwritten.
func Save(path string, id *Identity, pass *memguard.Enclave, p Params) error {
	if err := p.Check(); err != nil {
		return err
	}
	f := identityFile{Version: 1, Params: p, Salt: make([]byte, 16), Nonce: make([]byte, chacha20poly1305.NonceSizeX)}
	if _, err := io.ReadFull(rand.Reader, f.Salt); err != nil {
		return err
	}
	if _, err := io.ReadFull(rand.Reader, f.Nonce); err != nil {
		return err
	}
	err := fileKey(pass, f.Salt, p, func(key []byte) error {
		return id.withSeed(func(seed []byte) error {
			a, err := chacha20poly1305.NewX(key)
			if err != nil {
				return err
			}
			f.Sealed = a.Seal(nil, f.Nonce, seed, []byte(fileAD))
			return nil
		})
	})
	if err != nil {
		return err
	}
	b, err := cbor.Marshal(f)
	if err != nil {
		return err
	}
	return files.WriteNew(path, b)
}

// Load reads and decrypts an identity file. A wrong passphrase gives
// keystore.ErrWrongPIN, a damaged file ErrCorrupt; the file is never modified.
func Load(path string, pass *memguard.Enclave) (*Identity, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", keystore.ErrNotFound, filepath.Base(path))
	} else if err != nil {
		return nil, err
	}
	f, err := parseFile(b)
	if err != nil {
		return nil, err
	}
	var id *Identity
	err = fileKey(pass, f.Salt, f.Params, func(key []byte) error {
		a, err := chacha20poly1305.NewX(key)
		if err != nil {
			return err
		}
		seed, err := a.Open(nil, f.Nonce, f.Sealed, []byte(fileAD))
		if err != nil {
			return fmt.Errorf("%w (or the file was altered)", keystore.ErrWrongPIN)
		}
		defer secret.Wipe(seed)
		id, err = FromSeed(seed)
		return err
	})
	return id, err
}

// parseFile decodes an identity file strictly and bounds its parameters.
func parseFile(b []byte) (identityFile, error) {
	var f identityFile
	if len(b) > 4096 || decMode.Unmarshal(b, &f) != nil || f.Version != 1 ||
		len(f.Salt) != 16 || len(f.Nonce) != chacha20poly1305.NonceSizeX ||
		len(f.Sealed) != SeedSize+chacha20poly1305.Overhead {
		return f, ErrCorrupt
	}
	if f.Params.Check() != nil {
		return f, fmt.Errorf("%w: argon2id parameters out of range", ErrCorrupt)
	}
	return f, nil
}

// Check applies the bounds Load enforces, so nothing is written that could
// not be read back.
func (p Params) Check() error {
	if p.Time < 1 || p.Time > maxTime || p.Threads < 1 || p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory {
		return ErrParams
	}
	return nil
}

// Keystore is a directory of identity files (NAME.lmid), all sealed under
// one passphrase.
type Keystore struct {
	mu     sync.Mutex
	dir    string
	pass   *memguard.Enclave
	params Params
}

var _ keystore.Keystore = (*Keystore)(nil)

const ext = ".lmid"

// Open opens (creating it 0700 if needed) the keystore directory dir. The
// passphrase is copied into an enclave; the caller wipes its own copy.
// p == nil means DefaultParams for new files.
func Open(dir string, passphrase []byte, p *Params) (*Keystore, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", keystore.ErrWrongPIN)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", keystore.ErrKeystore, err)
	}
	k := &Keystore{dir: dir, params: DefaultParams}
	if p != nil {
		k.params = *p
	}
	if err := k.params.Check(); err != nil {
		return nil, err
	}
	pass, err := sealNew(passphrase)
	if err != nil {
		return nil, err
	}
	k.pass = pass
	return k, nil
}

func (k *Keystore) path(name string) (string, error) {
	if err := files.CheckName(name); err != nil {
		return "", err
	}
	return filepath.Join(k.dir, name+ext), nil
}

func (k *Keystore) check() error {
	if k.pass == nil {
		return keystore.ErrClosed
	}
	return nil
}

// Generate creates and saves a new identity (it always holds both suites).
func (k *Keystore) Generate(name string, suites ...keystore.Suite) (keystore.Identity, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check(); err != nil {
		return nil, err
	}
	for _, s := range suites {
		if s != keystore.X25519 && s != keystore.P256 {
			return nil, keystore.ErrUnsupportedSuite
		}
	}
	p, err := k.path(name)
	if err != nil {
		return nil, err
	}
	id, err := Generate()
	if err != nil {
		return nil, err
	}
	if err := Save(p, id, k.pass, k.params); err != nil {
		return nil, err
	}
	return id, nil
}

// Open loads the named identity.
func (k *Keystore) Open(name string) (keystore.Identity, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check(); err != nil {
		return nil, err
	}
	p, err := k.path(name)
	if err != nil {
		return nil, err
	}
	return Load(p, k.pass)
}

// List returns the identity names, sorted.
func (k *Keystore) List() ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(k.dir)
	if err != nil {
		return nil, fmt.Errorf("memory: listing %s: %w (%w)", k.dir, keystore.ErrKeystore, err)
	}
	var names []string
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ext)
		if ok && e.Type().IsRegular() && files.CheckName(n) == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Delete removes the named identity file.
func (k *Keystore) Delete(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check(); err != nil {
		return err
	}
	p, err := k.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", keystore.ErrNotFound, name)
	} else if err != nil {
		return err
	}
	return nil
}

// Close forgets the passphrase.
func (k *Keystore) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pass = nil
	return nil
}
