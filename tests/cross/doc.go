// Package cross tests the library as it is built for field devices
// (`make cross`: build/linux-GOARCH/) on those devices' architectures,
// linux/arm64 and linux/arm (ARMv7), under qemu-user, beside the host's own
// linux/amd64 build. Its tests carry the build tag cross, so `go test ./...`
// skips them; `make crosstest` (part of `make test`) runs them:
//
//	go test -tags cross -v ./tests/cross
//
// What runs, for each emulated architecture:
//   - the Go tests of core, keystore/memory, keystore/tpm (against swtpm,
//     which runs natively and is reached over TCP and Unix sockets),
//     keystore/pkcs11 (SoftHSM's module of that architecture), internal/secret,
//     messenger (-short) and capi, as test binaries cross-compiled with
//     `go test -c` and run under qemu;
//   - the C programs of tests/c, linked against that architecture's
//     libloramesh.so through its pkg-config file;
//   - the Python binding's in-process tests under an emulated python3.11;
//   - examples/c/lmchat, linked against libloramesh.a, talking over UDP to the
//     Python CLI's daemon running natively.
//
// Programs run as `qemu-ARCH-static -L SYSROOT PROGRAM`, never through
// binfmt_misc, so the tests work where registering interpreters with the
// kernel is impossible or unwelcome. SYSROOT is a minimal Debian root made
// by sysroot.sh (`make sysroots`).
package cross
