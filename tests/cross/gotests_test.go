//go:build cross

package cross

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// goPackages are the packages whose Go tests run under emulation: the
// protocol, the keystores a field device holds its identity in, locked
// memory, the messenger engine, and the C ABI's Go side (its header
// constants and feature bits). skip names the tests that do not run there,
// each for the reason beside it.
//
// armOnly packages run on 32-bit arm only, where Go breaks silently (64-bit
// atomics, int sizes, struct layouts); on arm64 their layouts are amd64's,
// and the TPM and PKCS#11 paths are covered there by TestC and TestExample.
// That keeps make test within its time.
var goPackages = []struct {
	pkg     string
	skip    string
	armOnly bool
}{
	// TestTenThousandSessionsLockedMemory makes 5,000 P-256 handshakes: four
	// minutes under qemu-arm, and the slab's accounting is the same code
	// TestLockedMemoryExhaustion exercises. TestLockedMemoryExhaustion re-runs
	// its own binary, which needs binfmt_misc: TestGo runs its child itself.
	{"core", "^(TestTenThousandSessionsLockedMemory|TestLockedMemoryExhaustion)$", false},
	// The tests below re-run their own binary as a second process (a killed
	// writer, a custody child, an idle child, an attacker without the PIN,
	// the PIN-less user nobody), which needs binfmt_misc; they fail with
	// "exec format error" without it. The custody tests also need
	// runtime/secret, which linux/arm lacks. They run natively in make gotest.
	{"keystore/memory", "^(TestKilledWriter|TestCustody|TestIdleWakeups)$", false},
	{"keystore/tpm", "^TestSwtpm$/^reloaded_in_a_second_process$|^TestCustody$", true},
	{"keystore/pkcs11", "^(TestCustody|TestTokenUnreadable|TestSubstitutedPublicKeyDetected|TestPublicObjectsNeedPIN)$", true},
	{"internal/secret", "", false},
	{"messenger", "", true}, // -short: no soak
	{"capi", "", false},
}

// packagesFor returns the goPackages that run on goarch.
func packagesFor(goarch string) (out []struct {
	pkg     string
	skip    string
	armOnly bool
}) {
	for _, p := range goPackages {
		if !p.armOnly || goarch == "arm" {
			out = append(out, p)
		}
	}
	return out
}

// TestGo cross-compiles the test binaries of goPackages for each emulated
// architecture and runs them under qemu (-test.short), each in its package
// directory as `go test` would. The host's own architecture runs them in
// `make gotest`, with the race detector.
func TestGo(t *testing.T) {
	for _, tg := range targets {
		if tg.native() {
			continue
		}
		t.Run(tg.goarch, func(t *testing.T) {
			t.Parallel()
			tg.ready(t)
			elapsed(t)
			bin := t.TempDir()
			args := []string{"test", "-c", "-o", bin + "/"}
			pkgs := packagesFor(tg.goarch)
			for _, p := range pkgs {
				args = append(args, "./"+p.pkg)
			}
			build := exec.CommandContext(ctx(t, 10*time.Minute), goTool(), args...)
			build.Dir, build.Env = root, tg.goEnv()
			t0 := time.Now()
			run(t, build)
			t.Logf("%v: test binaries built in %v", tg, time.Since(t0).Round(100*time.Millisecond))
			for _, p := range pkgs {
				t.Run(p.pkg, func(t *testing.T) {
					exe := filepath.Join(bin, filepath.Base(p.pkg)+".test")
					targs := []string{"-test.short", "-test.count=1", "-test.timeout=5m"}
					if p.skip != "" {
						targs = append(targs, "-test.skip", p.skip)
					}
					cmd := tg.command(ctx(t, 6*time.Minute), exe, targs...)
					cmd.Dir = filepath.Join(root, p.pkg)
					t0 := time.Now()
					out := run(t, cmd)
					t.Logf("%s: %s in %v", p.pkg, lastLine(out), time.Since(t0).Round(100*time.Millisecond))
				})
			}
			t.Run("core/TestLockedMemoryExhaustion", func(t *testing.T) {
				memlockChild(t, tg, filepath.Join(bin, "core.test"))
			})
		})
	}
}

// memlockChild does what core's TestLockedMemoryExhaustion does, with qemu
// in between: it runs the test binary's child half (LORAMESH_MEMLOCK_CHILD)
// with RLIMIT_MEMLOCK lowered by the child itself, as nobody when we are
// root (CAP_IPC_LOCK ignores the limit). The guest's setrlimit and mlock
// reach the host kernel through qemu, so this is the real limit at work on
// the guest's 32- or 64-bit sizes.
func memlockChild(t *testing.T, tg *target, testBin string) {
	dir, err := os.MkdirTemp("", "lmlock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	exe := filepath.Join(dir, "core.test")
	b, err := os.ReadFile(testBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := tg.command(ctx(t, 5*time.Minute), exe, "-test.run=^TestLockedMemoryExhaustion$", "-test.v")
	cmd.Env = append(os.Environ(), "LORAMESH_MEMLOCK_CHILD=1", "TMPDIR="+dir)
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out := run(t, cmd)
	if !strings.Contains(out, "exhaustion handled") {
		t.Fatalf("no \"exhaustion handled\" from the child:\n%s", tail(out, 30))
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "exhaustion handled") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
