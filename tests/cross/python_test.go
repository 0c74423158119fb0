//go:build cross

package cross

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// pythonTests are the binding's test files run under the emulated
// interpreter. The CLI's tests (test_cli, test_pty, test_install) are not:
// every one of them starts the CLI or its daemon as another Python process,
// and a process under qemu-user can start another emulated program only
// through binfmt_misc. pytest_emulated.py deselects the few tests of these
// files that do the same (those using the make_node fixture).
var pythonTests = []string{
	"python/tests/test_constants.py",
	"python/tests/test_binding.py",
	"python/tests/test_engine.py",
	"python/tests/test_interop.py",
	"python/tests/test_links.py",
	"python/tests/test_tpm.py",
	"tests/cross/test_emulated.py",
}

// TestPython runs the binding's tests with Debian's python3.11 of each
// emulated architecture (from the sysroot) under qemu: ctypes loads that
// architecture's libloramesh.so, so the binding's declarations, the
// struct lm_event layout and the library are checked there, not on amd64.
// The tools the tests start (swtpm, softhsm2-util, openssl, socat) run
// natively. The struct layout to compare with comes from arch.c, compiled
// by the architecture's C compiler.
func TestPython(t *testing.T) {
	for _, tg := range targets {
		if tg.native() {
			continue
		}
		t.Run(tg.goarch, func(t *testing.T) {
			t.Parallel()
			tg.ready(t)
			elapsed(t)
			layout := tg.arch(t)["layout"]
			py := filepath.Join(tg.sysroot(), "usr", "bin", "python3.11")
			args := append([]string{"-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_emulated"}, pythonTests...)
			cmd := tg.command(ctx(t, 8*time.Minute), py, args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(),
				"LORAMESH_LIB="+filepath.Join(tg.dir(), "libloramesh.so"),
				"PYTHONPATH="+filepath.Join(root, "python")+":"+filepath.Join(root, "tests", "cross"),
				"PYTHONDONTWRITEBYTECODE=1",
				"LM_CROSS_GOARCH="+tg.goarch, "LM_CROSS_MACHINE="+tg.machine, "LM_CROSS_BITS="+strconv.Itoa(tg.bits),
				"LM_CROSS_LAYOUT="+layout)
			out := run(t, cmd)
			summary := regexp.MustCompile(`(?m)^\d+ passed.*$`).FindString(out)
			if summary == "" {
				t.Fatalf("no pytest summary:\n%s", tail(out, 30))
			}
			t.Logf("%v: python3.11 under qemu: %s", tg, summary)
		})
	}
}
