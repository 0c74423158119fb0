//go:build linux

package core_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"golang.org/x/sys/unix"
)

const memlockChild = "LORAMESH_MEMLOCK_CHILD"

// When locked memory runs out, new sessions and identities fail with
// ErrLockedMemory (memguard's panic never fires) and existing sessions keep
// working. Runs in a child with RLIMIT_MEMLOCK at 192 KiB, as nobody when
// root (CAP_IPC_LOCK ignores the limit).
func TestLockedMemoryExhaustion(t *testing.T) {
	if os.Getenv(memlockChild) != "" {
		memlockExhaust(t)
		return
	}
	dir, err := os.MkdirTemp("", "lmlock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	exe := filepath.Join(dir, "core.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestLockedMemoryExhaustion$", "-test.v")
	cmd.Env = append(os.Environ(), memlockChild+"=1")
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "exhaustion handled") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func memlockExhaust(t *testing.T) {
	lim := unix.Rlimit{Cur: 192 << 10, Max: 192 << 10}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	a, b := newP256Identity(), newP256Identity()
	m, err := memory.Generate() // its seed stays sealed until first used
	if err != nil {
		t.Fatal(err)
	}
	r := core.NewResponder(b, &core.Config{ReplayCache: 1})
	var live []*core.Session
	for len(live) < 100000 {
		var in *core.Initiator
		var m1, m2 []byte
		var x, y *core.Session
		if in, m1, err = core.Initiate(a, mustPub(t, b), nil, nil); err != nil {
			break
		}
		if y, _, m2, err = r.Respond(m1, nil); err != nil {
			in.Close()
			break
		}
		if x, _, err = in.Finish(m2); err != nil {
			break
		}
		live = append(live, x, y)
	}
	if !errors.Is(err, core.ErrLockedMemory) || len(live) < 1000 {
		t.Fatalf("after %d sessions: %v", len(live), err)
	}
	// Take whatever lockable memory is left.
	for {
		p, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil || unix.Mlock(p) != nil {
			break
		}
	}
	// A memory identity keeps its sealed seed in the slab and unseals it into
	// a slot for each operation: with no lockable memory left it works while
	// the slab has slots, and otherwise fails with ErrLockedMemory, never a
	// panic.
	if g, err := memory.Generate(); err != nil && !errors.Is(err, core.ErrLockedMemory) {
		t.Fatalf("memory identity without locked memory: %v", err)
	} else if err == nil {
		g.Close()
	}
	var out [32]byte
	if err := m.DH(mustPub(t, b), &out); err != nil && !errors.Is(err, core.ErrLockedMemory) {
		t.Fatalf("memory identity DH without locked memory: %v", err)
	}
	// A run of lost packets needs skipped-key slots there are none of: the
	// session keeps fewer (those messages count as lost) and goes on.
	var last []byte
	for range 11 {
		if last, err = live[0].Encrypt([]byte("after a loss")); err != nil {
			t.Fatal(err)
		}
	}
	if pt, err := live[1].Decrypt(last); err != nil || string(pt) != "after a loss" {
		t.Fatalf("session stuck after lost packets: %v", err)
	}
	for i := 0; i < len(live); i += 2 {
		ct, err := live[i].Encrypt([]byte("still here"))
		if err != nil {
			t.Fatalf("session %d lost: %v", i, err)
		}
		if pt, err := live[i+1].Decrypt(ct); err != nil || string(pt) != "still here" {
			t.Fatalf("session %d lost: %v", i, err)
		}
	}
	t.Logf("exhaustion handled after %d sessions: %v", len(live), err)
}

func mustPub(t *testing.T, id keystore.Identity) keystore.PublicKey {
	k, err := id.DHPublic(keystore.P256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
