//go:build goexperiment.runtimesecret

package secret

import rs "runtime/secret"

// Do runs f, erasing the registers and stack f used and, once they are
// garbage, the heap temporaries it allocated (runtime/secret). Every call that
// touches key material runs inside it. runtime/secret erases only on
// linux/amd64 and linux/arm64; elsewhere it just calls f (see Erases).
func Do(f func()) { rs.Do(f) }
