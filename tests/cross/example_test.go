//go:build cross

package cross

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// exampleRuns: examples/c/lmchat built for an architecture, with an
// identity from a seed file or in a TPM (swtpm over TCP), against the
// Python CLI. Every build links libloramesh.a; "fully static" links libc in
// too and runs under qemu without the sysroot.
var exampleRuns = []struct {
	goarch, identity string
	fullyStatic      bool
}{
	{"amd64", "seed", false},
	{"arm64", "tpm", false},
	{"arm", "seed", true},
	{"arm", "tpm", false},
}

// TestExample: lmchat and a node of the Python CLI (its daemon, natively,
// with a memory identity) import each other's cards and exchange a message
// each way over UDP on loopback, both acknowledged; text the peer chose
// arrives escaped.
func TestExample(t *testing.T) {
	for _, r := range exampleRuns {
		name := r.goarch + "/" + r.identity
		if r.fullyStatic {
			name += "/fully-static"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tg := targetOf(t, r.goarch)
			tg.ready(t)
			hostTarget(t).ready(t)
			elapsed(t)
			pc := "loramesh-static"
			exe := tg.compileC(t, "lmchat", pc, r.fullyStatic, filepath.Join(root, "examples", "c", "lmchat.c"))
			checkNoSharedLoramesh(t, exe)

			py := newPyNode(t, "py")
			dir := t.TempDir()
			pyCard, fwCard := filepath.Join(dir, "py.card"), filepath.Join(dir, "fw.card")
			py.run(t, "card", "export", "-o", pyCard)

			port := freePort(t, false)
			args := []string{"--state", filepath.Join(dir, "state"), "--name", "firmware " + r.goarch,
				"--card-out", fwCard, "--bind", fmt.Sprintf("127.0.0.1:%d", port),
				"--peer", "py", "--peer-card", pyCard, "--peer-addr", fmt.Sprintf("127.0.0.1:%d", py.port), "--linger", "60"}
			if r.identity == "tpm" {
				auth := filepath.Join(dir, "auth")
				os.WriteFile(auth, []byte("field device auth\n"), 0o600)
				args = append(args, "--tpm", swtpm(t, true), "--tpm-auth-file", auth)
			} else {
				args = append(args, "--seed", filepath.Join(dir, "fw.seed"))
			}
			var cmd *exec.Cmd
			if r.fullyStatic {
				cmd = exec.CommandContext(ctx(t, 5*time.Minute), tg.qemu, append([]string{exe}, args...)...)
			} else {
				cmd = tg.command(ctx(t, 5*time.Minute), exe, args...)
			}
			fw := startChat(t, cmd)
			fw.expect(t, `^libloramesh \S+, `+regexp.QuoteMeta(tg.String())+` go1\.`)
			fw.expect(t, `^ready: UDP `)

			py.run(t, "contact", "import", fwCard, "--as", "fw", "--addr", fmt.Sprintf("udp:127.0.0.1:%d", port))

			// Python -> C: `loramesh send` returns once lmchat acknowledged it.
			py.run(t, "send", "fw", "--timeout", "90", "hello firmware \x1b[31m\u202e ünï")
			fw.expect(t, `^py\?: hello firmware \\x1b\[31m\\u202e \\u00fcn\\u00ef$`)

			// C -> Python.
			text := "hello from the " + r.goarch + " firmware"
			fw.send(t, text+"\n")
			fw.expect(t, `^\* message 1 delivered$`)
			got := py.run(t, "listen", "--contact", "fw", "--history", "20", "--duration", "1")
			if !strings.Contains(got, "fw?: "+text) {
				t.Fatalf("the Python node did not show the message:\n%s", got)
			}

			// End of input: lmchat exits 0, everything it sent delivered.
			fw.close(t)
			if err := fw.wait(); err != nil {
				t.Fatalf("lmchat: %v\n%s", err, fw.output())
			}
			if r.identity == "tpm" && !strings.Contains(fw.output(), "(TPM)") {
				t.Fatalf("lmchat did not use the TPM identity:\n%s", fw.output())
			}
		})
	}
}

func targetOf(t *testing.T, goarch string) *target {
	for _, tg := range targets {
		if tg.goarch == goarch {
			return tg
		}
	}
	t.Fatalf("no target %s", goarch)
	return nil
}

func hostTarget(t *testing.T) *target {
	for _, tg := range targets {
		if tg.native() {
			return tg
		}
	}
	t.Fatal("no native target")
	return nil
}

// checkNoSharedLoramesh: a program linked with loramesh-static.pc needs no
// libloramesh.so at run time.
func checkNoSharedLoramesh(t *testing.T, exe string) {
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "loramesh") }) {
		t.Fatalf("%s needs %v", exe, libs)
	}
}

// ---- the Python CLI ------------------------------------------------------------

type pyNode struct {
	home, secret string
	port         int
	env          []string
}

// newPyNode initialises a node of the CLI with a memory identity and a UDP
// link on a free loopback port, using the host's build of the library; its
// daemon (started by the first command that needs it) is stopped at the end.
func newPyNode(t *testing.T, name string) *pyNode {
	t.Helper()
	dir := t.TempDir()
	n := &pyNode{home: filepath.Join(dir, name), secret: filepath.Join(dir, name+".secret"), port: freePort(t, false)}
	if err := os.WriteFile(n.secret, []byte("cross test pass phrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.env = append(os.Environ(), "LORAMESH_LIB="+filepath.Join(hostTarget(t).dir(), "libloramesh.so"),
		"PYTHONPATH="+filepath.Join(root, "python"), "PYTHONDONTWRITEBYTECODE=1")
	n.run(t, "init", "--name", name, "--udp", fmt.Sprintf("127.0.0.1:%d", n.port), "--argon2", "1,64,1")
	t.Cleanup(func() {
		cmd := n.command(ctx(t, time.Minute), "stop")
		cmd.Run()
	})
	return n
}

func python() string {
	if p := os.Getenv("PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

func (n *pyNode) command(c context.Context, args ...string) *exec.Cmd {
	argv := append([]string{"-m", "loramesh", "--home", n.home}, args...)
	argv = append(argv, "--passphrase-file", n.secret)
	cmd := exec.CommandContext(c, python(), argv...)
	cmd.Env = n.env
	return cmd
}

func (n *pyNode) run(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, n.command(ctx(t, 2*time.Minute), args...))
}

// ---- lmchat --------------------------------------------------------------------

// chat is a running lmchat: its stdin, and its stdout read line by line.
type chat struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	all   strings.Builder
	done  chan error
}

func startChat(t *testing.T, cmd *exec.Cmd) *chat {
	t.Helper()
	c := &chat{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{c}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.mu.Lock()
			c.all.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return c
}

type lockedWriter struct{ c *chat }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.all.Write(p)
}

func (c *chat) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all.String()
}

// expect waits (at most two minutes) for a line of lmchat's output
// matching re, skipping the lines before it.
func (c *chat) expect(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l, open := <-c.lines:
			if !open {
				t.Fatalf("lmchat ended before printing /%s/:\n%s", re, c.output())
			}
			if rx.MatchString(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no line /%s/ from lmchat:\n%s", re, c.output())
		}
	}
}

func (c *chat) send(t *testing.T, s string) {
	if _, err := io.WriteString(c.stdin, s); err != nil {
		t.Fatal(err)
	}
}

func (c *chat) close(t *testing.T) {
	if err := c.stdin.Close(); err != nil {
		t.Fatal(err)
	}
}

// wait waits for lmchat to exit after the end of its input.
func (c *chat) wait() error {
	go func() {
		for range c.lines { // drain, so the reader reaches Wait
		}
	}()
	select {
	case err := <-c.done:
		return err
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("still running two minutes after the end of its input")
	}
}
