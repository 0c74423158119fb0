//go:build !(goexperiment.runtimesecret && linux && (amd64 || arm64))

package secret

// Erases reports whether Do erases what it runs. Not in this build: it lacks
// GOEXPERIMENT=runtimesecret, or runtime/secret does nothing on this platform
// (Go 1.26 erases only on linux/amd64 and linux/arm64).
const Erases = false
