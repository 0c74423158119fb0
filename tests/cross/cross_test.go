//go:build cross

package cross

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// target is one architecture the library is built for.
type target struct {
	goarch, goarm string
	cc            string // its C compiler
	qemu          string // its emulator; "" for the host's own architecture
	deb           string // Debian's name, for the sysroot
	triple        string // the multiarch triplet
	machine       string // what uname -m (Python's platform.machine) says there
	bits          int
	elf           elf.Machine
	erase         bool // runtime/secret erases there
}

var targets = []*target{
	{goarch: "amd64", cc: "gcc", deb: "amd64", triple: "x86_64-linux-gnu", machine: "x86_64", bits: 64,
		elf: elf.EM_X86_64, erase: true},
	{goarch: "arm64", cc: "aarch64-linux-gnu-gcc", qemu: "qemu-aarch64-static", deb: "arm64", triple: "aarch64-linux-gnu",
		machine: "aarch64", bits: 64, elf: elf.EM_AARCH64, erase: true},
	{goarch: "arm", goarm: "7", cc: "arm-linux-gnueabihf-gcc", qemu: "qemu-arm-static", deb: "armhf",
		triple: "arm-linux-gnueabihf", machine: "armv7l", bits: 32, elf: elf.EM_ARM, erase: false},
}

// root is the repository (the tests run in tests/cross).
var root = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}()

func (tg *target) String() string  { return "linux/" + tg.goarch }
func (tg *target) native() bool    { return tg.qemu == "" }
func (tg *target) dir() string     { return filepath.Join(root, "build", "linux-"+tg.goarch) }
func (tg *target) sysroot() string { return filepath.Join(root, "build", "cross", "root-"+tg.deb) }

// command runs exe, built for tg: directly on the host's architecture, else
// under qemu-user with the sysroot as the root for the dynamic loader and
// for every absolute path the program opens that exists there (-L).
func (tg *target) command(ctx context.Context, exe string, args ...string) *exec.Cmd {
	if tg.native() {
		return exec.CommandContext(ctx, exe, args...)
	}
	return exec.CommandContext(ctx, tg.qemu, append([]string{"-L", tg.sysroot(), exe}, args...)...)
}

// goEnv is the environment that cross-compiles Go (with cgo) for tg;
// libcrypto (keystore/tpm's simulator) comes from the sysroot.
func (tg *target) goEnv() []string {
	env := append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH="+tg.goarch, "CC="+tg.cc)
	if tg.goarm != "" {
		env = append(env, "GOARM="+tg.goarm)
	}
	if !tg.native() {
		sr := tg.sysroot()
		env = append(env,
			"CGO_CFLAGS=-O2 -g -isystem "+sr+"/usr/include -isystem "+sr+"/usr/include/"+tg.triple,
			"CGO_LDFLAGS=-O2 -g -L"+sr+"/usr/lib/"+tg.triple)
	}
	return env
}

// ready fails the test unless the artifacts of `make cross` (and for an
// emulated target its emulator and `make sysroots`' root) are there.
func (tg *target) ready(t *testing.T) {
	t.Helper()
	for _, f := range []string{"libloramesh.so", "libloramesh.a", "loramesh.h", "loramesh.pc", "loramesh-static.pc"} {
		if _, err := os.Stat(filepath.Join(tg.dir(), f)); err != nil {
			t.Fatalf("%v: %v: run `make cross` first", tg, err)
		}
	}
	if _, err := exec.LookPath(tg.cc); err != nil {
		t.Fatalf("%v: no %s: `make cross-deps` installs it", tg, tg.cc)
	}
	if tg.native() {
		return
	}
	if _, err := exec.LookPath(tg.qemu); err != nil {
		t.Fatalf("%v: no %s: `make cross-deps` installs qemu-user-static", tg, tg.qemu)
	}
	if _, err := os.Stat(filepath.Join(tg.sysroot(), ".stamp")); err != nil {
		t.Fatalf("%v: no sysroot in %s: run `make sysroots`", tg, tg.sysroot())
	}
}

// ---- running things --------------------------------------------------------

// run runs cmd with a deadline and returns its combined output; a non-zero
// exit or a timeout fails the test, showing the output's end.
func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	if err != nil {
		t.Fatalf("%s: %v after %v\n%s", strings.Join(cmd.Args, " "), err, time.Since(t0).Round(time.Millisecond), tail(out.String(), 60))
	}
	return out.String()
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = append([]string{fmt.Sprintf("... (%d lines before)", len(l)-lines)}, l[len(l)-lines:]...)
	}
	return strings.Join(l, "\n")
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// elapsed logs how long the current (sub)test took, for the report and to
// keep `make test` inside its budget.
func elapsed(t *testing.T) {
	t0 := time.Now()
	t.Cleanup(func() { t.Logf("%s took %v", t.Name(), time.Since(t0).Round(100*time.Millisecond)) })
}

// ---- TMPDIR ------------------------------------------------------------------

// TestMain puts every temporary file of this run, the programs under test
// included, on a tmpfs when one is there. A 32-bit guest under qemu-user
// makes its system calls through a 64-bit process, so ext4 hands it the
// 64-bit directory cookies a 64-bit program gets, and 32-bit glibc's
// readdir() fails with EOVERFLOW on them: SoftHSM then finds no tokens.
// That never happens on a real 32-bit board (the kernel gives 32-bit
// callers 32-bit cookies) nor on tmpfs; Go and Python read directories with
// getdents64 and 64-bit offsets, so the library itself is not affected.
func TestMain(m *testing.M) {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC && st.Bavail*uint64(st.Bsize) > 1<<30 {
		if d, err := os.MkdirTemp("/dev/shm", "loramesh-cross-"); err == nil {
			os.Chmod(d, 0o755) // for the memlock child, run as nobody; the test dirs inside are 0700
			os.Setenv("TMPDIR", d)
			code := m.Run()
			os.RemoveAll(d)
			os.Exit(code)
		}
	}
	fmt.Fprintln(os.Stderr, "cross: no tmpfs with 1 GiB free at /dev/shm: temporary files on disk; "+
		"32-bit SoftHSM tests under qemu may not find their tokens (see TestMain)")
	os.Exit(m.Run())
}

// ---- the artifacts -------------------------------------------------------------

// prototypes are the function names loramesh.h declares.
func prototypes(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(root, "capi", "loramesh.h"))
	if err != nil {
		t.Fatal(err)
	}
	src := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(string(b), " ")
	src = regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(src, " ")
	var names []string
	for _, m := range regexp.MustCompile(`\b(lm_[a-z0-9_]+)\s*\([^;{}()]*\)\s*;`).FindAllStringSubmatch(src, -1) {
		names = append(names, m[1])
	}
	sort.Strings(names)
	if len(names) < 40 {
		t.Fatalf("only %d prototypes in loramesh.h", len(names))
	}
	return names
}

// TestArtifacts: each build/linux-GOARCH/libloramesh.so is an ELF object of
// that architecture and word size exporting exactly the header's functions,
// and the pkg-config files point at their own directory.
func TestArtifacts(t *testing.T) {
	want := prototypes(t)
	for _, tg := range targets {
		t.Run(tg.goarch, func(t *testing.T) {
			tg.ready(t)
			f, err := elf.Open(filepath.Join(tg.dir(), "libloramesh.so"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			class := map[int]elf.Class{32: elf.ELFCLASS32, 64: elf.ELFCLASS64}[tg.bits]
			if f.Machine != tg.elf || f.Class != class || f.Type != elf.ET_DYN {
				t.Fatalf("libloramesh.so: %v %v %v, want %v %v ET_DYN", f.Machine, f.Class, f.Type, tg.elf, class)
			}
			syms, err := f.DynamicSymbols()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range syms {
				if strings.HasPrefix(s.Name, "lm_") && s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
					got = append(got, s.Name)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("exports differ from loramesh.h:\nexported %v\ndeclared %v", got, want)
			}
			if libs, _ := f.ImportedLibraries(); slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "crypto") }) {
				t.Errorf("the library links %v: it must need nothing but libc", libs)
			}
			for _, pc := range []string{"loramesh", "loramesh-static"} {
				cmd := exec.Command("pkg-config", "--cflags", "--libs", pc)
				cmd.Env = append(os.Environ(), "PKG_CONFIG_PATH="+tg.dir(), "PKG_CONFIG_LIBDIR="+tg.dir())
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "-I"+tg.dir()) || !strings.Contains(string(out), tg.dir()) {
					t.Errorf("pkg-config %s: %v: %s", pc, err, out)
				}
			}
			for _, f := range []string{"libloramesh.so", "libloramesh.a"} {
				if st, err := os.Stat(filepath.Join(tg.dir(), f)); err == nil {
					t.Logf("%v %s: %.1f MiB", tg, f, float64(st.Size())/(1<<20))
				}
			}
		})
	}
}

// ---- C ---------------------------------------------------------------------------

var cflags = []string{"-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"}

// compileC builds C sources for tg against its build of the library:
// through loramesh.pc (the shared library, found by rpath) or
// loramesh-static.pc (the archive); with static also libc is linked in.
func (tg *target) compileC(t *testing.T, name string, pc string, static bool, srcs ...string) string {
	t.Helper()
	cmd := exec.Command("pkg-config", "--cflags", "--libs", pc)
	cmd.Env = append(os.Environ(), "PKG_CONFIG_PATH="+tg.dir(), "PKG_CONFIG_LIBDIR="+tg.dir())
	flags, err := cmd.Output()
	if err != nil {
		t.Fatalf("pkg-config %s: %v", pc, err)
	}
	exe := filepath.Join(t.TempDir(), name)
	args := append(slices.Clone(cflags), "-I", filepath.Join(root, "tests", "c"))
	args = append(args, srcs...)
	args = append(args, strings.Fields(string(flags))...)
	if static {
		args = append(args, "-static")
	}
	args = append(args, "-o", exe)
	if out, err := exec.Command(tg.cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", tg.cc, strings.Join(args, " "), err, out)
	} else if len(out) > 0 && !static {
		t.Logf("%s: %s", tg.cc, out)
	}
	return exe
}

// arch runs tests/cross/c/arch.c for tg and returns its "key value" lines.
func (tg *target) arch(t *testing.T) map[string]string {
	t.Helper()
	exe := tg.compileC(t, "arch", "loramesh", false, filepath.Join(root, "tests", "cross", "c", "arch.c"))
	out := run(t, tg.command(ctx(t, time.Minute), exe))
	kv := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, " ")
		kv[k] = v
	}
	return kv
}

// TestFeatures: a C program of each architecture reads the build's feature
// bits: mlock everywhere, erase on amd64 and arm64 only, and the text says
// which platform it is; pointers are as wide as the architecture's.
func TestFeatures(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.goarch, func(t *testing.T) {
			t.Parallel()
			tg.ready(t)
			kv := tg.arch(t)
			t.Logf("%v: %s", tg, kv["text"])
			flags, _ := strconv.Atoi(kv["features"])
			const erase, mlock = 1, 2 // LM_FEATURE_* (capi checks them against the header)
			if (flags&erase != 0) != tg.erase || flags&mlock == 0 {
				t.Errorf("%v: features %#x, want erase=%v and mlock", tg, flags, tg.erase)
			}
			if !strings.HasPrefix(kv["text"], tg.String()+" go1.") {
				t.Errorf("%v: features text %q", tg, kv["text"])
			}
			if !tg.erase && !strings.Contains(kv["text"], "erase no (runtime/secret does not erase on linux/arm") {
				t.Errorf("%v: the missing erasure is not explained: %q", tg, kv["text"])
			}
			if kv["pointer_bits"] != strconv.Itoa(tg.bits) || kv["size_t_bits"] != strconv.Itoa(tg.bits) {
				t.Errorf("%v: pointers %s bits, size_t %s bits", tg, kv["pointer_bits"], kv["size_t_bits"])
			}
			if kv["huge_input"] != "1" { // LM_ERR_INVALID_ARG
				t.Errorf("%v: a 2 GiB input length gave %s, want LM_ERR_INVALID_ARG", tg, kv["huge_input"])
			}
			t.Logf("%v lm_event %s", tg, kv["layout"])
		})
	}
}

// swtpm starts a swtpm (natively) on a Unix socket or on loopback TCP and
// returns the device string the library takes.
func swtpm(t *testing.T, tcp bool) string {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatal("swtpm not installed (make deps installs it)")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	for range 5 {
		var server, ctrl, dev string
		if tcp {
			p := freePort(t, true)
			server, ctrl = fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", p), fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", p+1)
			dev = fmt.Sprintf("tcp:127.0.0.1:%d", p)
		} else {
			sock := filepath.Join(dir, "tpm.sock")
			server, ctrl = "type=unixio,path="+sock, "type=unixio,path="+filepath.Join(dir, "ctrl.sock")
			dev = "unix:" + sock
		}
		out, err := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir, "--server", server, "--ctrl", ctrl,
			"--flags", "not-need-init,startup-clear", "--pid", "file="+pidFile, "--daemon").CombinedOutput()
		if err != nil {
			t.Logf("swtpm: %v: %s", err, out)
			continue
		}
		t.Cleanup(func() {
			b, _ := os.ReadFile(pidFile)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		})
		return dev
	}
	t.Fatal("could not start swtpm")
	return ""
}

// freePort returns a loopback port free for TCP and UDP (and, with pair,
// the next one too).
func freePort(t *testing.T, pair bool) int {
	t.Helper()
	n := 1
	if pair {
		n = 2
	}
	for range 100 {
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.LocalAddr().(*net.UDPAddr).Port
		l.Close()
		var held []io.Closer
		free := true
		for i := range n {
			a := fmt.Sprintf("127.0.0.1:%d", p+i)
			if u, err := net.ListenPacket("udp", a); err == nil {
				held = append(held, u)
			} else {
				free = false
			}
			if s, err := net.Listen("tcp", a); err == nil {
				held = append(held, s)
			} else {
				free = false
			}
		}
		for _, c := range held {
			c.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}
