// Package files holds the file handling shared by the keystores that keep
// one file per identity (memory, TPM): the identity name rule, and the
// atomic, never-overwriting writer.
package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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

// WriteNew writes data to path atomically with mode 0600 and never replaces
// an existing file: a temporary file in the same directory is synced, then
// hard-linked into place (link fails if path exists: keystore.ErrExists),
// then the directory is synced. A crash leaves either no file or the whole
// file.
func WriteNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
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
		return err
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", filepath.Base(path), keystore.ErrExists)
	} else if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
