package memory_test

import (
	"bufio"
	"bytes"
	"crypto"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/keystore/memory"
)

const idleEnv = "LORAMESH_IDLE_CHILD"

// idleChild opens a keystore and an identity, uses it once, says "ready"
// and idles until stdin closes. With LORAMESH_IDLE_TICK set it also keeps a
// 2 Hz ticker (the control: what memguard's coffer did).
func idleChild() int {
	dir, _ := os.MkdirTemp("", "idle-")
	defer os.RemoveAll(dir)
	ks, err := memory.Open(dir, []byte("pw"), fast)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	id, err := ks.Generate("idle")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if _, err := id.Sign(nil, []byte("x"), crypto.Hash(0)); err != nil {
		fmt.Println(err)
		return 1
	}
	if os.Getenv("LORAMESH_IDLE_TICK") != "" {
		go func() {
			for range time.Tick(500 * time.Millisecond) {
			}
		}()
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	id.Close()
	ks.Close()
	return 0
}

// switches sums the context switches (voluntary and not) of every thread
// of pid: each wake-up of a sleeping thread is one.
func switches(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no tasks of %d", pid)
	}
	n := 0
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread exited
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(v))
				n += k
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(v))
				n += k
			}
		}
	}
	return n
}

// wakeups starts an idle child and counts its context switches over d.
func wakeups(t *testing.T, d time.Duration, tick bool) int {
	t.Helper()
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), idleEnv+"=1")
	if tick {
		c.Env = append(c.Env, "LORAMESH_IDLE_TICK=1")
	}
	in, _ := c.StdinPipe()
	var out bytes.Buffer
	r, w, _ := os.Pipe()
	c.Stdout = w
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() { in.Close(); c.Wait() }()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("child: %q %v %s", line, err, out.String())
	}
	time.Sleep(200 * time.Millisecond) // let the start-up settle
	before := switches(t, c.Process.Pid)
	time.Sleep(d)
	return switches(t, c.Process.Pid) - before
}

// An idle process holding an open memory identity does not wake up for it:
// at most 2 context switches in 3 s (the Go runtime's own background work;
// memguard's coffer alone re-keyed 6 times in that time). The control, a
// 2 Hz ticker, shows the count sees such wake-ups.
func TestIdleWakeups(t *testing.T) {
	window := 3 * time.Second
	if w, err := time.ParseDuration(os.Getenv("LORAMESH_IDLE_WINDOW")); err == nil {
		window = w // for measuring: LORAMESH_IDLE_WINDOW=10s
	}
	idle := wakeups(t, window, false)
	control := wakeups(t, window, true)
	t.Logf("context switches in %v: idle identity %d, with a 2 Hz ticker %d", window, idle, control)
	if control < int(2*window/time.Second) {
		t.Fatalf("the control with a 2 Hz ticker shows %d switches in %v: the measurement is blind", control, window)
	}
	if idle > 2*int(window/(3*time.Second)) {
		t.Fatalf("an idle process with an open identity woke %d times in %v", idle, window)
	}
}
