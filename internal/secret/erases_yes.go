//go:build goexperiment.runtimesecret && linux && (amd64 || arm64)

package secret

// Erases reports whether Do erases what it runs (registers, stack and heap
// temporaries): only runtime/secret builds on linux/amd64 and linux/arm64.
const Erases = true
