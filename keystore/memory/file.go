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

// DefaultMaxParams is the highest cost Load accepts unless told otherwise
// (Keystore.SetMaxParams, LoadWith): 256 MiB and 16 passes. An identity
// file chooses its own cost, so without a bound a crafted or foreign file
// (16 passes over 1 GiB: 13 s and 1 GiB on a server) gets a small gateway
// board killed for lack of memory. 256 MiB is four times DefaultParams and
// assumes a device with at least 512 MiB of RAM: on a board with less, lower
// it (and write files with less memory); on a server holding files made with
// more, raise it. The work is memory times passes: 16 passes over 256 MiB
// take about 3 s on a 2020s server core. Threads only split the work; any
// number from 1 to 255 is accepted.
var DefaultMaxParams = Params{Time: 16, Memory: 256 << 10, Threads: 255}

// Hard bounds: nothing beyond these is written, nor read whatever the limit.
const (
	maxMemory = 1 << 20 // 1 GiB
	maxTime   = 16
)

// identityFile is the CBOR identity file (docs/PROTOCOL.md, "Identity file").
// Params is written as the array [time, memory KiB, threads] (the
// specification); files from before this change hold the map {"Time",
// "Memory", "Threads"} (a misplaced toarray option), which is still read.
type identityFile struct {
	Version int             `cbor:"1,keyasint"`
	Params  cbor.RawMessage `cbor:"2,keyasint"`
	Salt    []byte          `cbor:"3,keyasint"`
	Nonce   []byte          `cbor:"4,keyasint"`
	Sealed  []byte          `cbor:"5,keyasint"`

	params Params // decoded Params
}

// paramsArray is the specified layout of field 2.
type paramsArray struct {
	_       struct{} `cbor:",toarray"`
	Time    uint32
	Memory  uint32
	Threads uint8
}

// paramsMap is the layout written before the array form (field names as
// keys).
type paramsMap struct {
	Time    uint32
	Memory  uint32
	Threads uint8
}

const fileAD = "loramesh identity v1"

var decMode, _ = cbor.DecOptions{
	DupMapKey:         cbor.DupMapKeyEnforcedAPF,
	IndefLength:       cbor.IndefLengthForbidden,
	TagsMd:            cbor.TagsForbidden,
	ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	MaxNestedLevels:   4,
}.DecMode()

// fileKey derives the file key from the passphrase.
func fileKey(pass *secret.Buffer, salt []byte, p Params, f func(key []byte) error) error {
	var err error
	secret.Do(func() {
		k := argon2.IDKey(pass.Bytes(), salt, p.Time, p.Memory, p.Threads, chacha20poly1305.KeySize)
		err = f(k)
		secret.Wipe(k)
	})
	return err
}

// Save writes id to path sealed under the passphrase, atomically, mode 0600.
// An existing file is never overwritten.
func Save(path string, id *Identity, pass *secret.Buffer, p Params) error {
	if err := p.Check(); err != nil {
		return err
	}
	f := identityFile{Version: 1, Salt: make([]byte, 16), Nonce: make([]byte, chacha20poly1305.NonceSizeX)}
	var err error
	if f.Params, err = cbor.Marshal(paramsArray{Time: p.Time, Memory: p.Memory, Threads: p.Threads}); err != nil {
		return err
	}
	if _, err := io.ReadFull(rand.Reader, f.Salt); err != nil {
		return err
	}
	if _, err := io.ReadFull(rand.Reader, f.Nonce); err != nil {
		return err
	}
	err = fileKey(pass, f.Salt, p, func(key []byte) error {
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

// Load reads and decrypts an identity file whose cost is within
// DefaultMaxParams.
func Load(path string, pass *secret.Buffer) (*Identity, error) {
	return LoadWith(path, pass, DefaultMaxParams)
}

// LoadWith reads and decrypts an identity file, refusing one whose argon2id
// cost is above max with ErrCost before any work. A wrong passphrase gives
// keystore.ErrWrongPIN, a damaged file ErrCorrupt; the file is never
// modified.
func LoadWith(path string, pass *secret.Buffer, max Params) (*Identity, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", keystore.ErrNotFound, filepath.Base(path))
	} else if err != nil {
		return nil, fmt.Errorf("memory: reading %s: %w (%w)", path, keystore.ErrKeystore, err)
	}
	f, err := parseFile(b)
	if err != nil {
		return nil, fmt.Errorf("memory: %s: %w", filepath.Base(path), err)
	}
	if err := f.params.within(max); err != nil {
		return nil, fmt.Errorf("memory: %s: %w", filepath.Base(path), err)
	}
	var id *Identity
	err = fileKey(pass, f.Salt, f.params, func(key []byte) error {
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
	if err != nil {
		return nil, err
	}
	return id, nil
}

// parseFile decodes an identity file strictly and applies the hard bounds
// on its parameters.
func parseFile(b []byte) (identityFile, error) {
	var f identityFile
	if len(b) > 4096 || decMode.Unmarshal(b, &f) != nil || f.Version != 1 ||
		len(f.Salt) != 16 || len(f.Nonce) != chacha20poly1305.NonceSizeX ||
		len(f.Sealed) != SeedSize+chacha20poly1305.Overhead || len(f.Params) == 0 {
		return f, ErrCorrupt
	}
	switch major := f.Params[0] >> 5; major {
	case 4: // array: the specified layout
		var a paramsArray
		if decMode.Unmarshal(f.Params, &a) != nil {
			return f, ErrCorrupt
		}
		f.params = Params{a.Time, a.Memory, a.Threads}
	case 5: // map: files written before the array form
		var m paramsMap
		if decMode.Unmarshal(f.Params, &m) != nil {
			return f, ErrCorrupt
		}
		f.params = Params(m)
	default:
		return f, ErrCorrupt
	}
	if f.params.Check() != nil {
		return f, fmt.Errorf("%w: argon2id parameters out of range", ErrCorrupt)
	}
	return f, nil
}

// Check applies the bounds every file must meet (time 1-16, threads >= 1,
// memory from 8 KiB per thread to 1 GiB), so nothing is written that could
// never be read back.
func (p Params) Check() error {
	if p.Time < 1 || p.Time > maxTime || p.Threads < 1 || p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory {
		return ErrParams
	}
	return nil
}

// within reports ErrCost, naming the parameter, its value, the limit and
// how to raise it, when p costs more than max allows.
func (p Params) within(max Params) error {
	var name string
	var got, lim uint32
	switch {
	case p.Memory > max.Memory:
		name, got, lim = "memory (KiB)", p.Memory, max.Memory
	case p.Time > max.Time:
		name, got, lim = "time (passes)", p.Time, max.Time
	case p.Threads > max.Threads:
		name, got, lim = "threads", uint32(p.Threads), uint32(max.Threads)
	default:
		return nil
	}
	return fmt.Errorf("%w: argon2id %s %d is above the limit %d; if this device has the memory and time for it, raise the limit (memory.Keystore.SetMaxParams, or LoadWith)",
		ErrCost, name, got, lim)
}

// Keystore is a directory of identity files (NAME.lmid), all sealed under
// one passphrase.
type Keystore struct {
	mu     sync.Mutex
	dir    string
	pass   *secret.Buffer
	params Params
	max    Params
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
	// A crash in the middle of a write may have left a temporary holding a
	// sealed seed: remove it before anything else.
	if err := files.Clean(dir); err != nil {
		return nil, fmt.Errorf("memory: cleaning %s: %w (%w)", dir, keystore.ErrKeystore, err)
	}
	k := &Keystore{dir: dir, params: DefaultParams, max: DefaultMaxParams}
	if p != nil {
		k.params = *p
	}
	if err := k.params.Check(); err != nil {
		return nil, err
	}
	pass, err := secret.NewBuffer(passphrase)
	if err != nil {
		return nil, err
	}
	k.pass = pass
	return k, nil
}

// SetMaxParams sets the highest argon2id cost Open accepts from an identity
// file (DefaultMaxParams unless set). Each field bounds one parameter.
func (k *Keystore) SetMaxParams(max Params) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.max = max
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
	if err := k.params.within(k.max); err != nil {
		return nil, fmt.Errorf("memory: new files would be unreadable here: %w", err)
	}
	id, err := Generate()
	if err != nil {
		return nil, err
	}
	if err := Save(p, id, k.pass, k.params); err != nil {
		id.Close()
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
	id, err := LoadWith(p, k.pass, k.max)
	if err != nil {
		return nil, err // a nil interface, never a typed nil
	}
	return id, nil
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
	if err := files.Remove(p); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", keystore.ErrNotFound, name)
	} else if err != nil {
		return err
	}
	return nil
}

// Close wipes the passphrase.
func (k *Keystore) Close() error {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pass.Free()
	k.pass = nil
	return nil
}
