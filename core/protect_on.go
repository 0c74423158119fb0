//go:build goexperiment.runtimesecret

package core

import "runtime/secret"

// Protect runs f, erasing the registers and stack f used and, once they are
// garbage, the heap temporaries it allocated (runtime/secret). Every call that
// touches key material runs inside it.
func Protect(f func()) { secret.Do(f) }

// ProtectEnabled reports whether Protect erases anything in this build.
const ProtectEnabled = true
