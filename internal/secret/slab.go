// Package secret is where loramesh keeps secrets: 32-byte slots in a slab of
// locked pages, locked pages for secrets of other sizes, wiping, and Do, the
// runtime/secret wrapper every operation on key material runs in.
//
// Locked memory is scarce (8 MiB of RLIMIT_MEMLOCK for a normal user) and one
// mlocked mapping per secret, as memguard does, would cost three pages each.
// An idle session holds two slots (64 bytes), so 10,000 sessions fit in ten
// 64 KiB chunks. The slab grows a chunk at a time and never falls back to
// unlocked memory: when mlock fails the allocation fails with
// ErrLockedMemory and every existing secret is untouched.
package secret

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"
)

// ErrLockedMemory: memory for secrets could not be locked.
var ErrLockedMemory = errors.New("cannot lock memory for secrets")

const chunkSize = 64 << 10

var slab struct {
	mu     sync.Mutex
	free   []*[32]byte
	chunks int
	inUse  int
	probe  []byte // pages for WithHeadroom
}

// reserve slots are kept, when the slab cannot grow, for keys that live only
// while one message is encrypted or decrypted (NewTemp): when locked memory
// runs out, new handshakes fail but established sessions still send and
// receive.
const reserve = 64

// New returns a zeroed 32-byte slot of locked memory for a key that outlives
// the call (chain keys, handshake state, skipped message keys).
func New() (*[32]byte, error) { return alloc(reserve + 1) }

// NewTemp returns a slot for a key wiped before the call returns; it may use
// the reserve.
func NewTemp() (*[32]byte, error) { return alloc(1) }

func alloc(need int) (*[32]byte, error) {
	slab.mu.Lock()
	defer slab.mu.Unlock()
	if len(slab.free) < need {
		if err := grow(); err != nil {
			return nil, err
		}
	}
	k := slab.free[len(slab.free)-1]
	slab.free = slab.free[:len(slab.free)-1]
	slab.inUse++
	return k, nil
}

// Free wipes k and returns it to the slab. nil is ignored.
func Free(k *[32]byte) {
	if k == nil {
		return
	}
	Wipe(k[:])
	slab.mu.Lock()
	slab.free = append(slab.free, k)
	slab.inUse--
	slab.mu.Unlock()
}

// NewN allocates a slot into each pointer, all or none.
func NewN(ks ...**[32]byte) error {
	for i, p := range ks {
		k, err := New()
		if err != nil {
			for _, q := range ks[:i] {
				Free(*q)
				*q = nil
			}
			return err
		}
		*p = k
	}
	return nil
}

func grow() error {
	mem, err := lockPages(chunkSize)
	if err != nil {
		return fmt.Errorf("%w (%d bytes locked by the slab)", err, slab.chunks*chunkSize)
	}
	for off := 0; off < chunkSize; off += 32 {
		slab.free = append(slab.free, (*[32]byte)(unsafe.Pointer(&mem[off])))
	}
	slab.chunks++
	return nil
}

// Usage reports the bytes the slab has locked and the bytes in use by live
// secrets.
func Usage() (locked, inUse int) {
	slab.mu.Lock()
	defer slab.mu.Unlock()
	return slab.chunks * chunkSize, slab.inUse * 32
}

// Buffer is a secret of any size in locked pages of its own (passphrases,
// PINs and auth values crossing the C ABI), wiped and unmapped by Free.
type Buffer struct {
	mem []byte
	n   int
}

// NewBuffer copies src into fresh locked pages.
func NewBuffer(src []byte) (*Buffer, error) {
	if len(src) == 0 {
		return &Buffer{}, nil
	}
	pg := pageSize()
	mem, err := lockPages((len(src) + pg - 1) / pg * pg)
	if err != nil {
		return nil, err
	}
	copy(mem, src)
	return &Buffer{mem: mem, n: len(src)}, nil
}

// Bytes is the secret, nil when empty.
func (b *Buffer) Bytes() []byte {
	if b == nil || b.n == 0 {
		return nil
	}
	return b.mem[:b.n]
}

// Free wipes and unmaps the buffer. nil and repeated calls are ignored.
func (b *Buffer) Free() {
	if b == nil || b.mem == nil {
		return
	}
	Wipe(b.mem)
	unlockPages(b.mem)
	b.mem, b.n = nil, 0
}
