//go:build js && wasm

package files

import "os"

// A browser has no file system: the browser keystore and the page's state
// live in IndexedDB. Under node (the wasm tests) the file keystore still
// works, on the portable path: a temporary file linked to its name, which
// fails if the name exists.

func writeTmpfile(_, _ string, _ []byte) error { return errNoTmpfile }

func renameNoReplace(tmp, path string) error { return os.Link(tmp, path) }
