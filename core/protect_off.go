//go:build !goexperiment.runtimesecret

package core

// Protect runs f. This build lacks GOEXPERIMENT=runtimesecret, so temporaries
// of the primitives are not erased; the Makefile builds with it on.
func Protect(f func()) { f() }

// ProtectEnabled reports whether Protect erases anything in this build.
const ProtectEnabled = false
