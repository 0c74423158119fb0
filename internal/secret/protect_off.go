//go:build !goexperiment.runtimesecret

package secret

// Do runs f. This build lacks GOEXPERIMENT=runtimesecret, so temporaries of
// the primitives are not erased; the Makefile builds with it on.
func Do(f func()) { f() }
