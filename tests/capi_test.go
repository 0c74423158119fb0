// Package tests builds libloramesh (capi/) as a C shared library and drives
// it from C: the programs in tests/c, compiled with cc against the
// hand-written capi/loramesh.h, and a check that the header and the library
// agree on every function.
//
// The library is built once per run with the go command running the test
// and the caller's environment, so `GOEXPERIMENT=runtimesecret go test
// ./tests` tests that build.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/internal/softhsm"
)

var (
	buildOnce sync.Once
	libDir    string
	buildErr  error
)

// lib builds the library into a temporary directory shared by the tests of
// this run and returns that directory (libloramesh.so and cgo's
// libloramesh.h).
func lib(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		libDir, buildErr = os.MkdirTemp("", "libloramesh-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command(goTool(), "build", "-buildmode=c-shared", "-o", filepath.Join(libDir, "libloramesh.so"),
			"github.com/loramesh/loramesh-core/capi")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return libDir
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

func TestMain(m *testing.M) {
	code := m.Run()
	if libDir != "" {
		os.RemoveAll(libDir)
	}
	os.Exit(code)
}

func cc(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("CC"), "cc", "gcc", "clang"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("no C compiler (cc, gcc, clang) on PATH: the C API tests need one")
	return ""
}

var cflags = []string{"-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"}

// compile builds tests/c/NAME.c against the header and the library.
func compile(t *testing.T, name string) string {
	t.Helper()
	dir := lib(t)
	exe := filepath.Join(t.TempDir(), name)
	args := append(slices.Clone(cflags), "-I", "../capi", "-I", "c", filepath.Join("c", name+".c"),
		"-L", dir, "-lloramesh", "-Wl,-rpath,"+dir, "-o", exe)
	if out, err := exec.Command(cc(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("cc %s.c: %v\n%s", name, err, out)
	}
	return exe
}

// run runs a test program with a deadline and fails the test on a non-zero
// exit, showing its output.
func run(t *testing.T, env []string, exe string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out (deadlock?)\n%s", filepath.Base(exe), out.String())
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(exe), err, out.String())
	}
	t.Logf("%s", strings.TrimSpace(out.String()))
	return out.String()
}

func TestCBasic(t *testing.T) {
	t.Parallel()
	exe := compile(t, "basic")
	run(t, nil, exe, filepath.Join(t.TempDir(), "keystore"))
}

func TestCEngine(t *testing.T) {
	t.Parallel()
	exe := compile(t, "engine")
	run(t, nil, exe, t.TempDir())
}

// TestCVerifySmallOrder: lm_verify refuses the neutral point (01 00..00,
// and as y = p + 1) and the other small-order keys with the signature
// (neutral point, S = 0) over 1,000 messages each (issue 16 #5).
func TestCVerifySmallOrder(t *testing.T) {
	t.Parallel()
	exe := compile(t, "smallorder")
	if out := run(t, nil, exe); !strings.Contains(out, "0 of 8000 forged signatures") {
		t.Fatalf("unexpected output: %s", out)
	}
}

func TestCThreads(t *testing.T) {
	t.Parallel()
	exe := compile(t, "threads")
	run(t, nil, exe, filepath.Join(t.TempDir(), "keystore"))
}

// TestCSoftHSM runs softhsm.c on a throwaway SoftHSM2 token. SoftHSM2 reads
// SOFTHSM2_CONF at C_Initialize; softhsm.New sets it in this process's
// environment, which the C program inherits.
func TestCSoftHSM(t *testing.T) {
	env, err := softhsm.New()
	if err != nil {
		t.Fatalf("SoftHSM2 not available (make deps installs it): %v", err)
	}
	defer env.Cleanup()
	tok, err := env.InitToken("capi-test", "7361")
	if err != nil {
		t.Fatal(err)
	}
	exe := compile(t, "softhsm")
	run(t, []string{"SOFTHSM2_CONF=" + env.Conf, "LM_TEST_PIN=" + string(tok.PIN)}, exe, tok.URI())
}

// TestCTPM runs tpm.c on a fresh swtpm (Unix socket), started here as a
// daemon and stopped by the pid it writes.
func TestCTPM(t *testing.T) {
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatal("swtpm not installed (make deps installs it)")
	}
	exe := compile(t, "tpm")
	dir := t.TempDir()
	sock, pidFile := filepath.Join(dir, "tpm.sock"), filepath.Join(dir, "swtpm.pid")
	out, err := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear", "--pid", "file="+pidFile, "--daemon").CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm: %v: %s", err, out)
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		var pid int
		if _, serr := fmt.Sscan(string(b), &pid); err != nil || serr != nil || pid <= 1 {
			t.Errorf("swtpm pid file: %v", err)
			return
		}
		syscall.Kill(pid, syscall.SIGTERM)
	})
	for i := 0; i < 100 && !fileExists(sock); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	run(t, nil, exe, "unix:"+sock, filepath.Join(dir, "keys"))
}

// prototype is one function declared in loramesh.h.
type prototype struct {
	ret, name, params string
}

// prototypes parses the function declarations of a C header: comments and
// preprocessor lines removed, then every `RET lm_NAME(PARAMS);`.
func prototypes(t *testing.T, header string) []prototype {
	t.Helper()
	src := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(header, " ")
	src = regexp.MustCompile(`//[^\n]*`).ReplaceAllString(src, " ")
	src = regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(src, " ")
	re := regexp.MustCompile(`(?s)([A-Za-z_][A-Za-z0-9_ \t\n*]*?)\b(lm_[a-z0-9_]+)\s*\(([^;{}()]*)\)\s*;`)
	var ps []prototype
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		ret := strings.Join(strings.Fields(m[1]), " ")
		ret = strings.TrimPrefix(ret, "extern ")
		ps = append(ps, prototype{ret, m[2], strings.Join(strings.Fields(m[3]), " ")})
	}
	if len(ps) < 40 {
		t.Fatalf("parsed only %d prototypes from the header", len(ps))
	}
	return ps
}

func readHeader(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../capi/loramesh.h")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestABIExports: the library's dynamic symbols named lm_* are exactly the
// functions the header declares (nothing missing, nothing undocumented),
// including the three fixed names.
func TestABIExports(t *testing.T) {
	dir := lib(t)
	out, err := exec.Command("nm", "-D", "--defined-only", filepath.Join(dir, "libloramesh.so")).Output()
	if err != nil {
		t.Fatalf("nm: %v", err)
	}
	var exported []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasPrefix(f[2], "lm_") {
			if f[1] != "T" {
				t.Errorf("symbol %s has type %s, want T (text)", f[2], f[1])
			}
			exported = append(exported, f[2])
		}
	}
	var declared []string
	for _, p := range prototypes(t, readHeader(t)) {
		declared = append(declared, p.name)
	}
	sort.Strings(exported)
	sort.Strings(declared)
	for _, n := range declared {
		if !slices.Contains(exported, n) {
			t.Errorf("%s declared in loramesh.h but not exported by the library", n)
		}
	}
	for _, n := range exported {
		if !slices.Contains(declared, n) {
			t.Errorf("%s exported by the library but not declared in loramesh.h", n)
		}
	}
	for _, fixed := range []string{"lm_version", "lm_secure_wipe", "lm_strerror"} {
		if !slices.Contains(declared, fixed) {
			t.Errorf("fixed name %s missing", fixed)
		}
	}
	t.Logf("%d functions declared and exported", len(declared))
}

// sigcheck writes a C file that includes cgo's generated header (the types
// the Go exports really have) and assigns every function to a pointer of
// the type loramesh.h declares. const is defined away after cgo's header,
// since cgo cannot express it and it does not change the ABI; any other
// difference in return or parameter types is an incompatible-pointer error.
func sigcheck(ps []prototype) string {
	var b strings.Builder
	b.WriteString("#include \"libloramesh.h\"\n#define const\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "typedef %s (*chk_%s_t)(%s);\nchk_%s_t chk_%s = %s;\n", p.ret, p.name, p.params, p.name, p.name, p.name)
	}
	return b.String()
}

func compileC(t *testing.T, src string, extra ...string) ([]byte, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "check.c")
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-std=c11", "-Wall", "-Wextra", "-Werror", "-Werror=incompatible-pointer-types",
		"-Wno-unused-variable", "-I", lib(t), "-I", "../capi", "-c", "-o", f + ".o", f}, extra...)
	return exec.Command(cc(t), args...).CombinedOutput()
}

// TestABISignatures: every prototype of loramesh.h matches the exported
// function's type, checked by the C compiler against cgo's header.
func TestABISignatures(t *testing.T) {
	ps := prototypes(t, readHeader(t))
	if out, err := compileC(t, sigcheck(ps)); err != nil {
		t.Fatalf("loramesh.h and the library disagree:\n%s", out)
	}
	// The check has teeth: one altered parameter type fails to compile.
	bad := slices.Clone(ps)
	for i, p := range bad {
		if p.name == "lm_session_encrypt" {
			bad[i].params = strings.Replace(p.params, "size_t *len", "uint32_t *len", 1)
			if bad[i].params == p.params {
				t.Fatal("lm_session_encrypt's prototype changed; update this test")
			}
		}
	}
	out, err := compileC(t, sigcheck(bad))
	if err == nil || !strings.Contains(string(out), "chk_lm_session_encrypt") {
		t.Fatalf("an altered prototype compiled (or failed elsewhere): the signature check proves nothing\n%s", out)
	}
	// And the header alone: strict C, every function assignable to a
	// pointer of its declared type, also from C++ when a compiler is there.
	var b strings.Builder
	b.WriteString("#include \"loramesh.h\"\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "%s (*p_%s)(%s) = %s;\n", p.ret, p.name, p.params, p.name)
	}
	if out, err := compileC(t, b.String(), "-pedantic", "-Wstrict-prototypes"); err != nil {
		t.Fatalf("loramesh.h alone:\n%s", out)
	}
	if cxx, err := exec.LookPath("c++"); err == nil {
		f := filepath.Join(t.TempDir(), "check.cc")
		os.WriteFile(f, []byte("#include \"loramesh.h\"\nint main() { return lm_abi_version() == LM_ABI_VERSION ? 0 : 1; }\n"), 0o600)
		if out, err := exec.Command(cxx, "-Wall", "-Werror", "-I", "../capi", "-c", "-o", f+".o", f).CombinedOutput(); err != nil {
			t.Fatalf("loramesh.h from C++:\n%s", out)
		}
	}
}
