//go:build !(js && wasm)

package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/sys/unix"
)

func writeTmpfile(dir, path string, data []byte) error {
	if ForceFallback {
		return errNoTmpfile
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EISDIR), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT) && dirExists(dir):
		return errNoTmpfile
	case err != nil:
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir+"/(unnamed)")
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w", filepath.Base(path), keystore.ErrExists)
	case errors.Is(err, unix.ENOENT) && !dirExists("/proc/self/fd"):
		return errNoTmpfile // no /proc: the inode is dropped, try the fallback
	case err != nil:
		return &fs.PathError{Op: "link", Path: path, Err: err}
	}
	return nil
}

// renameNoReplace renames tmp to path unless path exists (fs.ErrExist):
// renameat2 with RENAME_NOREPLACE, or a link where that is not supported
// (WriteNew's deferred Remove then drops the second name).
func renameNoReplace(tmp, path string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = os.Link(tmp, path)
	}
	return err
}
