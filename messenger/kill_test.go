//go:build !(js && wasm)

package messenger_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/messenger"
)

// The kill test runs two real nodes, each a child process (this test binary
// again) with a sealed Store on disk, talking over UDP on loopback, and
// kills one or the other with SIGKILL at random moments, hundreds of times,
// restarting it at once. Then sending stops, the network settles, the
// children stop, and the test opens both state files and checks, from the
// histories, that every message a child accepted was delivered exactly once
// or failed, that nothing was shown twice, and that every state file
// opened at every restart.

const killChildEnv = "LORAMESH_KILL_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(killChildEnv) != "" {
		os.Exit(killChild())
	}
	os.Exit(m.Run())
}

// killProfile: UDP with short timers, so the network settles in seconds.
var killProfile = messenger.Profile{
	FrameSize: 1200, RTO: 200 * time.Millisecond, MaxRTO: 2 * time.Second, Deadline: time.Minute,
	AckDelay: 20 * time.Millisecond, InFlight: 16, Reassembly: 30 * time.Second,
	RenewAfter: time.Hour, RenewCount: 10000, Grace: 30 * time.Second,
	Handshakes: 50, HandshakeB: 50, MaxAttempts: 4,
}

func killIdentity(name string) (keystore.Identity, error) {
	return memory.FromSeed(bytes.Repeat([]byte(name[:1]), 32))
}

func killConfig() messenger.Config {
	return messenger.Config{Durable: true, History: 10000}
}

// killChild is one node: LORAMESH_KILL_CHILD=name, args in the environment.
func killChild() int {
	name, dir := os.Getenv(killChildEnv), os.Getenv("KILL_DIR")
	peerName, peerAddr, local := os.Getenv("KILL_PEER"), os.Getenv("KILL_PEER_ADDR"), os.Getenv("KILL_LOCAL")
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 3
	}
	id, err := killIdentity(name)
	if err != nil {
		return fail(err)
	}
	store, err := messenger.OpenStore(dir, id)
	if err != nil {
		return fail(err)
	}
	b, err := store.Load()
	if err != nil {
		return fail(fmt.Errorf("the state does not open: %w", err))
	}
	now := time.Now()
	e, err := messenger.New(id, killConfig(), b, now)
	if err != nil {
		return fail(fmt.Errorf("the state does not load: %w", err))
	}
	e.AddLink("udp", killProfile)
	if len(e.Contacts()) == 0 {
		pid, _ := killIdentity(peerName)
		card, _ := core.NewCard(pid, peerName)
		if _, err := e.AddContact(peerName, card, false); err != nil {
			return fail(err)
		}
		e.SetContactAddrs(peerName, messenger.Addr{Link: "udp", Addr: peerAddr})
	}
	la, _ := net.ResolveUDPAddr("udp", local)
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		return fail(err)
	}
	accepted, err := os.OpenFile(filepath.Join(dir, "..", name+".accepted"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fail(err)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	// after runs after every engine call: packets out, the state saved
	// when due, and what the save released out too.
	after := func() error {
		out := func() {
			pkts, _ := e.Poll()
			for _, p := range pkts {
				a, _ := net.ResolveUDPAddr("udp", p.To.Addr)
				conn.WriteToUDP(p.Data, a)
			}
		}
		out()
		if st, due := e.Changed(); due {
			if err := store.Save(st); err != nil {
				return err
			}
			e.Saved()
			out()
		}
		return nil
	}
	buf := make([]byte, 2048)
	nextSend := time.Now()
	for i := 0; ; {
		select {
		case <-term:
			e.Tick(time.Now())
			if err := store.Save(e.State()); err != nil {
				return fail(err)
			}
			return 0
		default:
		}
		if _, err := os.Stat(filepath.Join(dir, "..", "stop-sending")); err != nil && time.Now().After(nextSend) {
			i++
			text := fmt.Sprintf("%s-%d-%d", name, os.Getpid(), i)
			if _, err := e.Send(time.Now(), peerName, []byte(text)); err == nil {
				if err := after(); err != nil {
					return fail(err)
				}
				fmt.Fprintln(accepted, text) // only once the save after Send is done
			}
			nextSend = time.Now().Add(time.Duration(5+rand.IntN(20)) * time.Millisecond)
		}
		wait := 5 * time.Millisecond
		if d := e.Deadline(); !d.IsZero() {
			wait = min(wait, max(time.Until(d), 0))
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		n, from, err := conn.ReadFromUDP(buf)
		if err == nil {
			e.Receive(time.Now(), messenger.Addr{Link: "udp", Addr: from.String()}, buf[:n])
		} else {
			e.Tick(time.Now())
		}
		if err := after(); err != nil {
			return fail(err)
		}
	}
}

func TestKillAtRandomMoments(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the kill test takes about a minute")
	}
	root := t.TempDir()
	ports := freePorts(t, 2)
	names := []string{"alice", "bob"}
	type child struct {
		name string
		cmd  *exec.Cmd
		env  []string
		errs *bytes.Buffer
	}
	children := map[string]*child{}
	for i, n := range names {
		peer := names[1-i]
		children[n] = &child{name: n, env: append(os.Environ(), killChildEnv+"="+n, "KILL_DIR="+filepath.Join(root, n),
			"KILL_PEER="+peer, fmt.Sprintf("KILL_PEER_ADDR=127.0.0.1:%d", ports[1-i]), fmt.Sprintf("KILL_LOCAL=127.0.0.1:%d", ports[i]))}
	}
	start := func(c *child) {
		c.errs = &bytes.Buffer{}
		c.cmd = exec.Command(os.Args[0], "-test.run=^$")
		c.cmd.Env, c.cmd.Stderr = c.env, c.errs
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// wait reaps a child and fails the test unless it was killed or
	// stopped as asked: one that exits by itself could not open its state.
	wait := func(c *child, want syscall.Signal) {
		err := c.cmd.Wait()
		var ee *exec.ExitError
		if want == syscall.SIGTERM && err == nil {
			return
		}
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != want {
			t.Fatalf("%s ended with %v: %s", c.name, err, c.errs)
		}
	}
	for _, c := range children {
		start(c)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 200
	for range kills {
		time.Sleep(time.Duration(10+rng.IntN(120)) * time.Millisecond)
		c := children[names[rng.IntN(2)]]
		c.cmd.Process.Signal(syscall.SIGKILL)
		wait(c, syscall.SIGKILL)
		start(c)
	}
	os.WriteFile(filepath.Join(root, "stop-sending"), nil, 0o600)
	time.Sleep(8 * time.Second) // retransmissions and re-handshakes settle
	for _, c := range children {
		c.cmd.Process.Signal(syscall.SIGTERM)
		wait(c, syscall.SIGTERM)
	}

	hist := map[string][]messenger.Record{}
	for _, n := range names {
		id, _ := killIdentity(n)
		st, err := messenger.OpenStore(filepath.Join(root, n), id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := st.Load()
		if err != nil {
			t.Fatalf("%s's final state: %v", n, err)
		}
		e, err := messenger.New(id, killConfig(), b, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hist[n] = e.History()
		e.Close()
		st.Close()
		if ents, _ := os.ReadDir(filepath.Join(root, n)); len(ents) != 2 {
			t.Errorf("%s's state directory holds %d files (a crash's temporary left?)", n, len(ents))
		}
	}
	delivered, failed := 0, 0
	for i, n := range names {
		peer := names[1-i]
		out := map[string]messenger.DeliveryState{}
		for _, r := range hist[n] {
			if r.Out {
				out[string(r.Text)] = r.State
			}
		}
		acc, _ := os.ReadFile(filepath.Join(root, n+".accepted"))
		for _, text := range strings.Fields(string(acc)) {
			if _, ok := out[text]; !ok {
				t.Fatalf("%s accepted %q and lost it", n, text)
			}
		}
		shown := map[string]int{}
		for _, r := range hist[peer] {
			if !r.Out {
				shown[string(r.Text)]++
			}
		}
		for text, st := range out {
			switch st {
			case messenger.Delivered:
				delivered++
				if shown[text] != 1 {
					t.Fatalf("%q: delivered, shown %d times to %s", text, shown[text], peer)
				}
			case messenger.Failed:
				failed++
			default:
				t.Errorf("%q still %v after the network settled", text, st)
			}
		}
		for text, k := range shown {
			if _, ok := out[text]; !ok || k != 1 {
				t.Fatalf("%s was shown %q %d times (sent: %v)", peer, text, k, ok)
			}
		}
	}
	if delivered < 100 { // a loaded machine (the race detector, two cores) delivers fewer
		t.Fatalf("only %d messages delivered: the run proves little", delivered)
	}
	t.Logf("%d kills; %d messages delivered exactly once, %d failed, none lost or twice", kills, delivered, failed)
}

func freePorts(t *testing.T, n int) []int {
	var ports []int
	for range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
		c.Close()
	}
	return ports
}
