// Package files holds the file handling shared by the keystores that keep
// one file per identity (memory, TPM): the identity name rule, the atomic,
// never-overwriting writer, the clean-up of what a crash left, and removal
// of every link of a file.
package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/loramesh/loramesh-core/keystore"
)

// CheckName returns keystore.ErrInvalidName unless name is a valid identity
// name: 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -, so that a name
// is always a plain file name. Every keystore and the C ABI apply it.
func CheckName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' || name[0] == '-' {
		return keystore.ErrInvalidName
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return keystore.ErrInvalidName
		}
	}
	return nil
}

// tmpPrefix names the temporaries of Replace and of WriteNew's fallback
// path; Clean removes them.
const tmpPrefix = ".tmp-"

// ForceFallback makes WriteNew skip O_TMPFILE (tests of the fallback path).
var ForceFallback = false

// WriteNew writes data to path atomically with mode 0600 and never replaces
// an existing file (keystore.ErrExists), and never leaves the data under a
// second name:
//
//   - With O_TMPFILE (Linux 3.11+, on ext4, xfs, btrfs, tmpfs, ...), the data
//     goes to an unnamed inode in the directory, is synced, and is linked to
//     path (linkat through /proc/self/fd, which fails if path exists). A
//     crash before the link leaves nothing: the inode has no name.
//   - Otherwise a temporary ".tmp-*" file is written, synced, and renamed to
//     path with RENAME_NOREPLACE (renameat2, Linux 3.15+): the data has one
//     name at every moment. A crash before the rename leaves the temporary,
//     which Clean removes on the next open of the directory. Where
//     renameat2 is not supported either, the temporary is linked to path
//     and unlinked, so a crash between the two leaves a second link, which
//     Clean and Remove also remove.
//
// The directory is synced at the end.
func WriteNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	err := writeTmpfile(dir, path, data)
	if errors.Is(err, errNoTmpfile) {
		err = writeRenamed(dir, path, data)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var errNoTmpfile = errors.New("O_TMPFILE not supported")

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// writeTemp writes data, synced, to a new ".tmp-*" file of mode 0600 in dir
// and returns its name; on error nothing is left.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", err
	}
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func writeRenamed(dir, path string, data []byte) error {
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // after a rename, there is nothing left by this name
	err = renameNoReplace(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", filepath.Base(path), keystore.ErrExists)
	}
	return err
}

// Replace writes data to path atomically with mode 0600, replacing what is
// there: a temporary ".tmp-*" file written and synced, renamed over path,
// the directory synced. A crash leaves the old file or the new one, and at
// worst a temporary that Clean removes.
func Replace(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Clean removes the temporaries a crashed WriteNew or Replace left in dir
// (WriteNew makes them only on its fallback path). Keystores and the state
// store call it when they open a directory. A WriteNew running in another process at that moment on the fallback path
// fails (its identity is not created); nothing existing is lost.
func Clean(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// Remove removes path and every other name the same file has in its
// directory (a second link left by a crash), so that deleting an identity
// leaves no copy of its file there. It returns fs.ErrNotExist if path does
// not exist.
func Remove(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Nlink > 1 {
		dir := filepath.Dir(path)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if p == path {
				continue
			}
			if o, err := os.Lstat(p); err == nil && os.SameFile(st, o) {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		}
	}
	return os.Remove(path)
}
