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

	"golang.org/x/sys/unix"
)

// Store keeps an engine's state in a directory: the file "state" written
// atomically (a temporary file synced, renamed over it, the directory
// synced), under an exclusive lock on "lock" held while the Store is open,
// so a second process on the same identity gets ErrStateInUse naming the
// first instead of fighting it over sessions. Not on js/wasm: a page keeps
// its state in IndexedDB under a Web Lock (cmd/wasm, web/loramesh.js).
type Store struct {
	dir  string
	lock *os.File
}

const (
	stateName = "state"
	lockName  = "lock"
)

// OpenStore opens (creating it 0700) dir and locks it.
func OpenStore(dir string) (*Store, error) {
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
	s := &Store{dir: dir, lock: f}
	s.cleanTemps()
	return s, nil
}

// Load returns the saved state, nil if there is none.
func (s *Store) Load() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, stateName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(s.dir, stateName), err)
	}
	return b, nil
}

// Save replaces the state atomically: a crash leaves the old or the new.
func (s *Store) Save(b []byte) error {
	path := filepath.Join(s.dir, stateName)
	f, err := os.CreateTemp(s.dir, ".state-*")
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// cleanTemps removes temporary files a crash left behind.
func (s *Store) cleanTemps() {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".state-") {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
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
