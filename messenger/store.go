//go:build !(js && wasm)

package messenger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loramesh/loramesh-core/internal/files"
	"github.com/loramesh/loramesh-core/internal/seal"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/sys/unix"
)

// Store keeps an engine's state in a directory: the file "state", sealed to
// the identity (docs/STORAGE.md) and written atomically (a temporary file
// synced, renamed over it, the directory synced), under an exclusive lock on
// "lock" held while the Store is open, so a second process on the same
// identity gets ErrStateInUse naming the first instead of fighting it over
// sessions. Saving seals to the identity's public key (no key operation);
// loading costs one Identity.DH. A state file written before sealing
// existed (plain CBOR) is read, and sealed at the next save. Not on
// js/wasm: a page keeps its state in IndexedDB under a Web Lock (cmd/wasm,
// web/loramesh.js).
type Store struct {
	dir  string
	lock *os.File
	id   keystore.Identity
	to   keystore.PublicKey
}

const (
	stateName = "state"
	lockName  = "lock"
)

// sealPurpose names state files in their sealing (seal.Seal's purpose).
const sealPurpose = "state"

// OpenStore opens (creating it 0700) dir, for identity id's state, and
// locks it.
func OpenStore(dir string, id keystore.Identity) (*Store, error) {
	to, err := id.DHPublic(seal.Suite(id))
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b[:n]))
			if _, perr := strconv.Atoi(pid); perr != nil {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%s is used by process %s (stop it, or talk to it): %w", dir, pid, ErrStateInUse)
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	s := &Store{dir: dir, lock: f, id: id, to: to}
	files.Clean(s.dir)
	return s, nil
}

// Load returns the saved state, opened, nil if there is none. A file sealed
// to another identity gives ErrStateOwner, a damaged one ErrStateFile; both
// name the file and leave it as it is.
func (s *Store) Load() ([]byte, error) {
	path := filepath.Join(s.dir, stateName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !seal.IsSealed(b) && len(b) > 0 && b[0]&0xe0 == 0xa0 {
		return b, nil // a CBOR map: written before sealing (checked by the engine)
	}
	pt, err := seal.Open(s.id, sealPurpose, b)
	switch {
	case errors.Is(err, seal.ErrOpen):
		return nil, fmt.Errorf("%s: %w: %w (restore it from a backup made with this identity, or move it away to start afresh)", path, ErrStateOwner, err)
	case errors.Is(err, seal.ErrNotSealed), errors.Is(err, seal.ErrFormat):
		return nil, fmt.Errorf("%s: %w: %w (move it away to start afresh)", path, ErrStateFile, err)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pt, nil
}

// Save seals state b and replaces the file atomically: a crash leaves the
// old or the new.
func (s *Store) Save(b []byte) error {
	path := filepath.Join(s.dir, stateName)
	sealed, err := seal.Seal(s.to, sealPurpose, b)
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if err := files.Replace(path, sealed); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Close releases the lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor drops the flock
	s.lock = nil
	return err
}
