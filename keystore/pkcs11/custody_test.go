package pkcs11

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

const custodyEnv = "LORAMESH_P11_CUSTODY"

var custodySuites = []keystore.Suite{keystore.X25519, keystore.P256}

func streamSeed(r []byte, s keystore.Suite) (out [32]byte) {
	copy(out[:], r)
	out[0] ^= byte(s)
	return out
}

// custodyChild logs into the token with the PIN from stdin, opens the
// identity, runs a handshake in each suite with a memory peer whose seed
// comes from stdin, transport messages and a signature, closes everything
// (the last Close finalizes the module) and waits to be scanned.
func custodyChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	in, err := memscan.ReadSecret(16 + 96)
	if err != nil {
		return fail(err)
	}
	pin, rest := in.Bytes()[:16], in.Bytes()[16:]
	ks, err := Open(Config{ModulePath: os.Getenv("CUSTODY_MODULE"), Token: os.Getenv("CUSTODY_TOKEN")}, pin)
	if err != nil {
		return fail(err)
	}
	a, err := ks.Open("custody")
	if err != nil {
		return fail(err)
	}
	b, err := memory.FromSeed(rest[:32])
	if err != nil {
		return fail(err)
	}
	for _, s := range custodySuites {
		tr, err := memscan.Handshake(a, b, s, streamSeed(rest[32:64], s), streamSeed(rest[64:], s))
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%d %x %x\n", s, tr.Msg1, tr.Msg2)
	}
	if os.Getenv(custodyEnv) == "plant" {
		memscan.Planted = bytes.Clone(pin)
	}
	a.Close()
	ks.Close()
	b.Close()
	in.Free()
	memscan.Park()
	runtime.KeepAlive(memscan.Planted)
	return 0
}

func custody(t *testing.T, mode string, aPub map[keystore.Suite]keystore.PublicKey) map[string]int {
	t.Helper()
	input := append(bytes.Clone(tokCustody.PIN), make([]byte, 96)...)
	rand.Read(input[16:])
	c, err := memscan.Start(os.Args[0], []string{custodyEnv + "=" + mode,
		"CUSTODY_MODULE=" + tokCustody.Module, "CUSTODY_TOKEN=" + tokCustody.Label}, input)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	needles := memscan.MemorySecrets("B", input[16:48])
	needles["PIN"] = bytes.Clone(tokCustody.PIN)
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
		exp, err := memscan.Expected(s, input[16:48], aPub[s], streamSeed(input[48:80], s), streamSeed(input[80:], s), tr)
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
	t.Logf("%s: scanned %d MiB of the child for %d secrets", mode, scanned>>20, len(needles))
	return hits
}

// A SoftHSM identity used for handshakes in both suites (the token derives
// ss and se), then closed with its keystore: the child holds no trace of
// the PIN, the DH outputs or the session keys (the PIN and each derived
// secret crossed the C boundary only in our own locked memory). The control
// child keeps a copy of the PIN, which the same scan finds.
func TestCustody(t *testing.T) {
	memscan.RequireErasure(t)
	ks, err := OpenURI(tokCustody.URI(), tokCustody.PIN)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ks.Generate("custody")
	if err != nil {
		t.Fatal(err)
	}
	aPub := map[keystore.Suite]keystore.PublicKey{}
	for _, s := range custodySuites {
		aPub[s], _ = id.DHPublic(s)
	}
	id.Close()
	ks.Close()
	hits := custody(t, "clean", aPub)
	var f []string
	for k, n := range hits {
		if n > 0 {
			f = append(f, fmt.Sprintf("%s (%d)", k, n))
		}
	}
	sort.Strings(f)
	if len(f) > 0 {
		t.Fatalf("left in the child's memory after Close: %s", strings.Join(f, ", "))
	}
	if h := custody(t, "plant", aPub); h["PIN"] == 0 {
		t.Fatal("the scan misses a PIN the control child keeps: it proves nothing")
	}
}
