package secret

import (
	"crypto/subtle"
	"runtime"
)

// Wipe zeroes b. The clear cannot be elided: b escapes through KeepAlive.
// Go gives no guarantee that no other copy of a secret exists (the GC may have
// moved a heap object, a primitive may have spilled it); Do erases those
// where the build has runtime/secret, and the locked slab keeps our own
// secrets out of the movable heap altogether.
func Wipe(b []byte) {
	clear(b)
	runtime.KeepAlive(b)
}

// IsZero reports in constant time whether b is all zeros: the check every DH
// output gets (an all-zero X25519 output means a low-order peer point).
func IsZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return subtle.ConstantTimeByteEq(acc, 0) == 1
}
