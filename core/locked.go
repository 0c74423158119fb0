package core

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Every secret the core holds (ephemeral keys, chaining, handshake and chain
// keys, message keys) is a *[32]byte slot in a slab of mlocked pages: locked
// memory is scarce (8 MiB of RLIMIT_MEMLOCK for a normal user) and one
// mlocked mapping per secret, as memguard does, would cost three pages each.
// An idle session holds two slots (64 bytes), so 10,000 sessions fit in
// ten 64 KiB chunks. The slab grows a chunk at a time and never falls back to
// unlocked memory: when mlock fails the allocation fails with
// ErrLockedMemory and every existing secret is untouched.

const chunkSize = 64 << 10

var slab struct {
	mu     sync.Mutex
	free   []*[32]byte
	chunks int
	inUse  int
	probe  []byte // pages for WithLockedHeadroom
}

// reserve slots are kept, when the slab cannot grow, for the keys that live
// only while one message is encrypted or decrypted (newTempKey): when locked
// memory runs out, new handshakes fail but established sessions still send
// and receive.
const reserve = 64

// newKey returns a zeroed 32-byte slot of locked memory for a key that
// outlives the call (chain keys, handshake state, skipped message keys).
func newKey() (*[32]byte, error) { return allocKey(reserve + 1) }

// newTempKey returns a slot for a key wiped before the call returns; it may
// use the reserve.
func newTempKey() (*[32]byte, error) { return allocKey(1) }

func allocKey(need int) (*[32]byte, error) {
	slab.mu.Lock()
	defer slab.mu.Unlock()
	if len(slab.free) < need {
		if err := growSlab(); err != nil {
			return nil, err
		}
	}
	k := slab.free[len(slab.free)-1]
	slab.free = slab.free[:len(slab.free)-1]
	slab.inUse++
	return k, nil
}

// freeKey wipes k and returns it to the slab. nil is ignored.
func freeKey(k *[32]byte) {
	if k == nil {
		return
	}
	Wipe32(k)
	slab.mu.Lock()
	slab.free = append(slab.free, k)
	slab.inUse--
	slab.mu.Unlock()
}

// newKeys allocates n slots, all or none.
func newKeys(ks ...**[32]byte) error {
	for i, p := range ks {
		k, err := newKey()
		if err != nil {
			for _, q := range ks[:i] {
				freeKey(*q)
				*q = nil
			}
			return err
		}
		*p = k
	}
	return nil
}

func growSlab() error {
	mem, err := unix.Mmap(-1, 0, chunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("%w: mmap: %v", ErrLockedMemory, err)
	}
	if err := unix.Mlock(mem); err != nil {
		var lim unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
		_ = unix.Munmap(mem)
		return fmt.Errorf("%w: mlock of %d more bytes failed (%v); %d bytes locked by this slab, RLIMIT_MEMLOCK %d",
			ErrLockedMemory, chunkSize, err, slab.chunks*chunkSize, lim.Cur)
	}
	// Keep secrets out of core dumps and out of forked children.
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	for off := 0; off < chunkSize; off += 32 {
		slab.free = append(slab.free, (*[32]byte)(unsafe.Pointer(&mem[off])))
	}
	slab.chunks++
	return nil
}

// LockedMemory reports the bytes the core's slab has locked and the bytes in
// use by live secrets.
func LockedMemory() (locked, inUse int) {
	slab.mu.Lock()
	defer slab.mu.Unlock()
	return slab.chunks * chunkSize, slab.inUse * 32
}

// WithLockedHeadroom runs f, which locks memory outside the slab (memguard
// buffers), once it has checked that pages more pages can be locked. It holds
// the slab's lock meanwhile, so the slab cannot take them in between.
// memguard panics, purging every buffer in the process, when mlock fails;
// this turns that into ErrLockedMemory. Code elsewhere in the process that
// locks memory at the same moment could still race.
func WithLockedHeadroom(pages int, f func() error) error {
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
