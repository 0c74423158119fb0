//go:build cross

package cross

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// softhsmModule is where Debian puts SoftHSM2's PKCS#11 module, on the host
// and in the sysroots alike: under qemu -L the path finds the module of the
// emulated architecture.
const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

// token initialises a throwaway SoftHSM2 token (with the host's
// softhsm2-util: the token files are the same on every architecture) and
// returns its SOFTHSM2_CONF file, URI and PIN.
func token(t *testing.T, label string) (conf, uri, pin string) {
	t.Helper()
	dir := t.TempDir()
	conf, pin = filepath.Join(dir, "softhsm2.conf"), "7361-cross"
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
		filepath.Join(dir, "tokens"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util (make deps installs softhsm2): %v: %s", err, out)
	}
	return conf, "pkcs11:token=" + label + "?module-path=" + softhsmModule, pin
}

// TestC runs the C programs of tests/c, built for each emulated
// architecture against its libloramesh.so (through loramesh.pc), under
// qemu. tests/capi_test.go runs them on the host.
func TestC(t *testing.T) {
	for _, tg := range targets {
		if tg.native() {
			continue
		}
		t.Run(tg.goarch, func(t *testing.T) {
			t.Parallel()
			tg.ready(t)
			elapsed(t)
			build := func(name string) string {
				return tg.compileC(t, name, "loramesh", false, filepath.Join(root, "tests", "c", name+".c"))
			}
			t.Run("basic", func(t *testing.T) {
				run(t, tg.command(ctx(t, 3*time.Minute), build("basic"), filepath.Join(t.TempDir(), "keystore")))
			})
			t.Run("engine", func(t *testing.T) {
				run(t, tg.command(ctx(t, 3*time.Minute), build("engine"), t.TempDir()))
			})
			t.Run("threads", func(t *testing.T) {
				run(t, tg.command(ctx(t, 3*time.Minute), build("threads"), filepath.Join(t.TempDir(), "keystore")))
			})
			t.Run("tpm", func(t *testing.T) {
				run(t, tg.command(ctx(t, 3*time.Minute), build("tpm"), swtpm(t, false), filepath.Join(t.TempDir(), "keys")))
			})
			t.Run("softhsm", func(t *testing.T) {
				conf, uri, pin := token(t, "cross-c")
				cmd := tg.command(ctx(t, 3*time.Minute), build("softhsm"), uri)
				cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf, "LM_TEST_PIN="+pin)
				run(t, cmd)
			})
		})
	}
}
