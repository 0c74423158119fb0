package tpm

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

const custodyEnv = "LORAMESH_TPM_CUSTODY"

// custodyAuthLen: long enough for the scan (16 bytes at least).
const custodyAuthLen = 24

// custodyChild opens the swtpm keystore with the auth value from stdin,
// runs a P-256 handshake (the TPM computes ss and se), transport messages
// and a signature with a memory peer whose seed comes from stdin, closes
// everything and waits to be scanned.
func custodyChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	in, err := memscan.ReadSecret(custodyAuthLen + 96)
	if err != nil {
		return fail(err)
	}
	auth, rest := in.Bytes()[:custodyAuthLen], in.Bytes()[custodyAuthLen:]
	ks, err := OpenSwtpm(os.Getenv("CUSTODY_CMD"), os.Getenv("CUSTODY_PLAT"), Config{
		Dir: os.Getenv("CUSTODY_DIR"),
		// tpm copies the value to its own locked memory and wipes this copy.
		Auth: func(string) ([]byte, error) { return bytes.Clone(auth), nil },
	})
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
	var ra, rb [32]byte
	copy(ra[:], rest[32:64])
	copy(rb[:], rest[64:])
	tr, err := memscan.Handshake(a, b, keystore.P256, ra, rb)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("%x %x\n", tr.Msg1, tr.Msg2)
	if os.Getenv(custodyEnv) == "plant" {
		memscan.Planted = bytes.Clone(auth)
	}
	a.Close()
	ks.Close()
	b.Close()
	in.Free()
	memscan.Park()
	runtime.KeepAlive(memscan.Planted)
	return 0
}

func custody(t *testing.T, s *swtpm, dir, mode string, auth []byte, aPub keystore.PublicKey) map[string]int {
	t.Helper()
	input := append(bytes.Clone(auth), make([]byte, 96)...)
	rand.Read(input[custodyAuthLen:])
	c, err := memscan.Start(os.Args[0], []string{custodyEnv + "=" + mode,
		"CUSTODY_CMD=" + s.cmd, "CUSTODY_PLAT=" + s.plat, "CUSTODY_DIR=" + dir}, input)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	rest := input[custodyAuthLen:]
	needles := memscan.MemorySecrets("B", rest[:32])
	needles["auth value"] = bytes.Clone(auth)
	if len(c.Lines) != 1 {
		t.Fatalf("child said %q", c.Lines)
	}
	var m1, m2 string
	fmt.Sscan(c.Lines[0], &m1, &m2)
	var tr memscan.Transcript
	tr.Msg1, _ = hex.DecodeString(m1)
	tr.Msg2, _ = hex.DecodeString(m2)
	var ra, rb [32]byte
	copy(ra[:], rest[32:64])
	copy(rb[:], rest[64:])
	exp, err := memscan.Expected(keystore.P256, rest[:32], aPub, ra, rb, tr)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range exp {
		needles[k] = v
	}
	hits, scanned, err := memscan.Scan(c.Pid, needles)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: scanned %d MiB of the child for %d secrets", mode, scanned>>20, len(needles))
	return hits
}

// A TPM identity (swtpm, auth value, salted sessions) used for a handshake,
// then closed with its keystore: the child holds no trace of the auth
// value, the DH outputs (the TPM's ss and se among them) or the session
// keys. The control child keeps a copy of the auth value, which the same
// scan finds.
func TestCustody(t *testing.T) {
	memscan.RequireErasure(t)
	s := startSwtpm(t, false)
	dir := t.TempDir()
	// Random bytes: a readable value's halves could match text in the
	// binary (an alphabet table matches "ijklmnopqrstuvwx").
	auth := make([]byte, custodyAuthLen)
	rand.Read(auth)
	for i := range auth {
		auth[i] |= 1 // no zero bytes (refused: see newLockedAuth)
	}
	ks := s.open(t, dir, string(auth))
	id := generate(t, ks, "custody")
	aPub, _ := id.DHPublic(keystore.P256)
	id.Close()
	ks.Close() // swtpm serves one connection at a time
	var f []string
	for k, n := range custody(t, s, dir, "clean", auth, aPub) {
		if n > 0 {
			f = append(f, fmt.Sprintf("%s (%d)", k, n))
		}
	}
	sort.Strings(f)
	if len(f) > 0 {
		t.Fatalf("left in the child's memory after Close: %s", strings.Join(f, ", "))
	}
	if h := custody(t, s, dir, "plant", auth, aPub); h["auth value"] == 0 {
		t.Fatal("the scan misses an auth value the control child keeps: it proves nothing")
	}
}
