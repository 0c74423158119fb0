package pkcs11

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/loramesh/loramesh-core/keystore"
)

// tokenDir finds the directory SoftHSM keeps tok in.
func tokenDir(t *testing.T, label string) string {
	t.Helper()
	ds, _ := filepath.Glob(filepath.Join(env.Dir, "tokens", "*"))
	for _, d := range ds {
		b, _ := os.ReadFile(filepath.Join(d, "token.object"))
		if bytes.Contains(b, []byte(label)) {
			return d
		}
	}
	t.Fatalf("no directory for token %s", label)
	return ""
}

// lose makes the token's storage unavailable and returns how to restore it.
type lose func(t *testing.T, dir string) (restore func())

// renameAway moves the token directory out of SoftHSM's token directory
// (a sibling in it would be found as a token on the next scan).
func renameAway(t *testing.T, dir string) func() {
	away := filepath.Join(env.Dir, "away")
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Rename(away, dir); err != nil {
			t.Fatal(err)
		}
	}
}

func chmod000(t *testing.T, dir string) func() {
	if err := os.Chmod(dir, 0); err != nil {
		t.Fatal(err)
	}
	return func() { os.Chmod(dir, 0o700) }
}

// tokenLoss: with an identity open, the token's storage goes away; every
// operation and List then report the token as unavailable (never a missing
// identity, never an empty list); once it is back the next call reconnects,
// logs in again with the kept PIN and works, with the same keys.
func tokenLoss(t *testing.T, how lose) {
	ks := openKS(t, tokGone)
	id := newIdentity(t, ks, "steady")
	peer := mustP256(t)
	var before [32]byte
	if err := id.DH(peer, &before); err != nil {
		t.Fatal(err)
	}
	restore := how(t, tokenDir(t, tokGone.Label))
	var z [32]byte
	for i := range 2 {
		err := id.DH(peer, &z)
		if !errors.Is(err, ErrTokenUnavailable) || errors.Is(err, keystore.ErrNotFound) || !strings.Contains(err.Error(), tokGone.Label) {
			restore()
			t.Fatalf("DH %d with the token unreadable: %v", i, err)
		}
		names, err := ks.List()
		if !errors.Is(err, ErrTokenUnavailable) || names != nil {
			restore()
			t.Fatalf("List with the token unreadable: %v, %v", names, err)
		}
		o, err := ks.Open("steady")
		if !errors.Is(err, ErrTokenUnavailable) || errors.Is(err, keystore.ErrNotFound) || o != nil {
			restore()
			t.Fatalf("Open with the token unreadable: %v", err)
		}
	}
	restore()
	if err := id.DH(peer, &z); err != nil || z != before {
		t.Fatalf("DH once the token is back: %v", err)
	}
	if names, err := ks.List(); err != nil || len(names) != 1 || names[0] != "steady" {
		t.Fatalf("List once the token is back: %v, %v", names, err)
	}
	dhCheck(t, id, keystore.X25519)
	o, err := ks.Open("steady")
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
}

func TestTokenGone(t *testing.T) { tokenLoss(t, renameAway) }

// chmod 000 stops no one running as root (CAP_DAC_OVERRIDE), so as root the
// test binary runs this test again in a child as nobody, whose own SoftHSM
// tokens chmod does stop.
const nobodyEnv = "LORAMESH_P11_NOBODY"

func TestTokenUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		tokenLoss(t, chmod000)
		return
	}
	dir, err := os.MkdirTemp("", "p11nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o1777) // nobody makes its SoftHSM directory here
	exe := filepath.Join(dir, "pkcs11.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe, "-test.run=^TestTokenUnreadable$", "-test.v")
	c.Env = append(os.Environ(), nobodyEnv+"=1", "TMPDIR="+dir)
	c.Dir = dir
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := c.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestTokenUnreadable") {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
}
