package memory_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/loramesh/loramesh-core/internal/memscan"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

const custodyEnv = "LORAMESH_CUSTODY_CHILD"

var custodySuites = []keystore.Suite{keystore.X25519, keystore.P256}

// streamSeed varies the ephemeral stream per suite.
func streamSeed(r []byte, s keystore.Suite) (out [32]byte) {
	copy(out[:], r)
	out[0] ^= byte(s)
	return out
}

// custodyChild: identity A (under test) and peer B from the seeds on stdin,
// a handshake in each suite, transport messages, a signature; then
// everything is closed and the child waits to be scanned.
func custodyChild() int {
	in, err := memscan.ReadSecret(128 + 24)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// A keystore with the passphrase: an identity saved and loaded again
	// (argon2id, XChaCha20-Poly1305), then closed with the keystore.
	dir, _ := os.MkdirTemp("", "custody-")
	defer os.RemoveAll(dir)
	ks, err := memory.Open(dir, in.Bytes()[128:], fast)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if g, err := ks.Generate("saved"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	} else {
		g.Close()
	}
	l, err := ks.Open("saved")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l.Close()
	ks.Close()
	a, err := memory.FromSeed(in.Bytes()[:32])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := memory.FromSeed(in.Bytes()[32:64])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, s := range custodySuites {
		tr, err := memscan.Handshake(a, b, s, streamSeed(in.Bytes()[64:96], s), streamSeed(in.Bytes()[96:128], s))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("%d %x %x\n", s, tr.Msg1, tr.Msg2)
	}
	if os.Getenv(custodyEnv) == "plant" {
		memscan.Planted = bytes.Clone(in.Bytes()[:32])
	}
	a.Close()
	b.Close()
	in.Free()
	memscan.Park()
	runtime.KeepAlive(memscan.Planted)
	return 0
}

// custody runs the child and returns the hits of every secret the parent
// can compute.
func custody(t *testing.T, mode string) map[string]int {
	t.Helper()
	input := make([]byte, 128+24)
	rand.Read(input)
	c, err := memscan.Start(os.Args[0], []string{custodyEnv + "=" + mode}, input)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	needles := map[string][]byte{}
	for k, v := range memscan.MemorySecrets("A", input[:32]) {
		needles[k] = v
	}
	for k, v := range memscan.MemorySecrets("B", input[32:64]) {
		needles[k] = v
	}
	needles["passphrase"] = input[128:]
	a, _ := memory.FromSeed(input[:32])
	defer a.Close()
	if len(c.Lines) != len(custodySuites) {
		t.Fatalf("child said %q", c.Lines)
	}
	for _, line := range c.Lines {
		var s keystore.Suite
		var m1, m2 string
		fmt.Sscan(line, &s, &m1, &m2)
		var tr memscan.Transcript
		tr.Msg1, _ = hex.DecodeString(m1)
		tr.Msg2, _ = hex.DecodeString(m2)
		ap, _ := a.DHPublic(s)
		exp, err := memscan.Expected(s, input[32:64], ap, streamSeed(input[64:96], s), streamSeed(input[96:128], s), tr)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range exp {
			needles[s.String()[9:13]+" "+k] = v
		}
	}
	hits, scanned, err := memscan.Scan(c.Pid, needles)
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 1<<20 {
		t.Fatalf("scanned only %d bytes", scanned)
	}
	t.Logf("%s: scanned %d MiB of the child for %d secrets", mode, scanned>>20, len(needles))
	return hits
}

func found(hits map[string]int) string {
	var f []string
	for k, n := range hits {
		if n > 0 {
			f = append(f, fmt.Sprintf("%s (%d)", k, n))
		}
	}
	sort.Strings(f)
	return strings.Join(f, ", ")
}

// After a keystore saved and loaded an identity under a passphrase, and a
// memory identity signed, took part in handshakes in both suites and sent
// transport messages, and everything was closed, the process holds no trace
// of the passphrase, the seeds, their SHA-512 halves or P-256 scalars, the four DH
// outputs of each handshake or the session keys: the parent scans all of
// the child's memory, without the child running a GC. The control child
// keeps a copy of the seed, which the same scan finds.
func TestCustody(t *testing.T) {
	memscan.RequireErasure(t)
	if f := found(custody(t, "clean")); f != "" {
		t.Fatalf("left in the child's memory after Close: %s", f)
	}
	if h := custody(t, "plant"); h["A seed"] == 0 {
		t.Fatal("the scan misses a seed the control child keeps: it proves nothing")
	}
}
