//go:build js && wasm

package secret

// Locked is false on js/wasm: WebAssembly has no mlock, no guard pages and
// no core dumps to keep out of; the slab and Buffers are ordinary linear
// memory, which the page's JavaScript (any script on the page) can read
// through the instance's memory export. Secrets are still kept in the slab
// (Go's collector does not move it, so Wipe reaches the only copy the slab
// holds) and wiped when done; nothing else is promised. Custody reports it.
const Locked = false

const scriptReadable = true

// pageSize is WebAssembly's page (64 KiB); Buffers round to a small unit
// instead, since nothing is locked per page here.
func pageSize() int { return 64 }

// lockPages returns size bytes of ordinary memory, never locked: it cannot
// fail, so the slab never refuses a session on js/wasm.
func lockPages(size int) ([]byte, error) { return make([]byte, size), nil }

func unlockPages([]byte) {}

// WithHeadroom runs f: there is no locked memory to budget.
func WithHeadroom(_ int, f func() error) error { return f() }
