package core

import "runtime"

// Wipe zeroes b. The clear cannot be elided: b escapes through KeepAlive.
// Go gives no guarantee that no other copy of a secret exists (the GC may have
// moved a heap object, a primitive may have spilled it); Protect erases those
// where the build has runtime/secret, and the locked slab keeps our own
// secrets out of the movable heap altogether.
func Wipe(b []byte) {
	clear(b)
	runtime.KeepAlive(b)
}

// Wipe32 zeroes a 32-byte key.
func Wipe32(k *[32]byte) { Wipe(k[:]) }
