//go:build !(js && wasm)

package secret

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Locked reports whether secrets live in locked pages (mlock: out of swap;
// MADV_DONTDUMP and MADV_WIPEONFORK: out of core dumps and forked
// children). True on every native build: allocation fails rather than fall
// back to ordinary memory.
const Locked = true

const scriptReadable = false

func pageSize() int { return unix.Getpagesize() }

// lockPages maps size bytes (a multiple of the page size) of anonymous
// memory, locks them and keeps them out of core dumps and forked children.
func lockPages(size int) ([]byte, error) {
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap: %v", ErrLockedMemory, err)
	}
	if err := unix.Mlock(mem); err != nil {
		var lim unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("%w: mlock of %d more bytes failed (%v); RLIMIT_MEMLOCK %d", ErrLockedMemory, size, err, lim.Cur)
	}
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	return mem, nil
}

// unlockPages unlocks and unmaps what lockPages returned (already wiped).
func unlockPages(mem []byte) {
	_ = unix.Munlock(mem)
	_ = unix.Munmap(mem)
}

// WithHeadroom runs f, which locks memory outside the slab (memguard
// buffers), once it has checked that pages more pages can be locked. It holds
// the slab's lock meanwhile, so the slab cannot take them in between.
// memguard panics, purging every buffer in the process, when mlock fails;
// this turns that into ErrLockedMemory. Code elsewhere in the process that
// locks memory at the same moment could still race.
func WithHeadroom(pages int, f func() error) error {
	slab.mu.Lock()
	defer slab.mu.Unlock()
	size := pages * unix.Getpagesize()
	if len(slab.probe) < size {
		if slab.probe != nil {
			_ = unix.Munmap(slab.probe)
			slab.probe = nil
		}
		p, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("%w: mmap: %v", ErrLockedMemory, err)
		}
		slab.probe = p
	}
	if err := unix.Mlock(slab.probe[:size]); err != nil {
		return fmt.Errorf("%w: %d more pages cannot be locked (%v)", ErrLockedMemory, pages, err)
	}
	_ = unix.Munlock(slab.probe[:size])
	return f()
}
