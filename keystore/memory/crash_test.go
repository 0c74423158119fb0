package memory_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/internal/files"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

const writerEnv = "LORAMESH_WRITER_CHILD"

// writerChild creates identities in LORAMESH_WRITER_DIR until it is killed.
func writerChild() int {
	files.ForceFallback = os.Getenv("LORAMESH_WRITER_FALLBACK") != ""
	ks, err := memory.Open(os.Getenv("LORAMESH_WRITER_DIR"), []byte("pw"), fast)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("writing")
	for i := 0; ; i++ {
		id, err := ks.Generate(fmt.Sprintf("id-%d-%d", os.Getpid(), i))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		id.Close()
	}
}

// A writer killed with SIGKILL at random moments, many times, on both write
// paths (O_TMPFILE and the renameat2 fallback): every identity file left
// loads, and after the next open of the directory no file holds a sealed
// seed under any other name (no temporaries, no second links).
func TestKilledWriter(t *testing.T) {
	dir := t.TempDir()
	runs := 0
	for _, fallback := range []bool{false, true} {
		for range 40 {
			c := exec.Command(os.Args[0], "-test.run=^$")
			c.Env = append(os.Environ(), writerEnv+"=1", "LORAMESH_WRITER_DIR="+dir)
			if fallback {
				c.Env = append(c.Env, "LORAMESH_WRITER_FALLBACK=1")
			}
			out, _ := c.StdoutPipe()
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			// Kill at a random moment once it writes (its start-up time
			// varies too much, under -race, to aim from here).
			bufio.NewReader(out).ReadString('\n')
			time.Sleep(time.Duration(rand.IntN(20000)) * time.Microsecond)
			c.Process.Signal(syscall.SIGKILL)
			c.Wait()
			runs++
		}
		// What the crashes left, before the next open cleans it.
		ents, _ := os.ReadDir(dir)
		tmps := 0
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				tmps++
			}
		}
		t.Logf("fallback %v: %d files, %d temporaries left by the kills", fallback, len(ents), tmps)
		if !fallback && tmps != 0 {
			t.Fatalf("the O_TMPFILE path left %d named temporaries", tmps)
		}
		// A temporary as a crash on the fallback path leaves it (a complete
		// sealed file under a temporary name): the next open removes it.
		if err := os.WriteFile(filepath.Join(dir, ".tmp-12345"), []byte("sealed seed"), 0o600); err != nil {
			t.Fatal(err)
		}
		ks, err := memory.Open(dir, []byte("pw"), fast)
		if err != nil {
			t.Fatal(err)
		}
		names, err := ks.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(names) == 0 {
			t.Fatal("no identity was written: the kills came too early to test anything")
		}
		for _, n := range names {
			id, err := ks.Open(n)
			if err != nil {
				t.Fatalf("after %d kills, %s does not load: %v", runs, n, err)
			}
			id.Close()
		}
		ents, _ = os.ReadDir(dir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".lmid") {
				t.Fatalf("%s left in the keystore directory", e.Name())
			}
			st, _ := os.Stat(filepath.Join(dir, e.Name()))
			if n := st.Sys().(*syscall.Stat_t).Nlink; n != 1 {
				t.Fatalf("%s has %d links", e.Name(), n)
			}
		}
		ks.Close()
	}
}

// Delete removes every link of an identity file: a second name left by a
// crash (the link-and-unlink path of old versions) goes too, so no copy of
// the sealed seed stays in the directory.
func TestDeleteRemovesEveryLink(t *testing.T) {
	dir := t.TempDir()
	ks, err := memory.Open(dir, []byte("pw"), fast)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	id, err := ks.Generate("linked")
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	// A stray link under a name Clean does not know.
	if err := os.Link(filepath.Join(dir, "linked.lmid"), filepath.Join(dir, "stray-copy")); err != nil {
		t.Fatal(err)
	}
	if err := ks.Delete("linked"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left after Delete: %v", ents)
	}
}
