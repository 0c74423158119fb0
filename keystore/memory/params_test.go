package memory

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// legacyFile is the layout written before the array form: the toarray
// option sat on the field, where the CBOR library ignores it, so Params was
// a map keyed by field name.
type legacyFile struct {
	Version int    `cbor:"1,keyasint"`
	Params  Params `cbor:"2,keyasint,toarray"`
	Salt    []byte `cbor:"3,keyasint"`
	Nonce   []byte `cbor:"4,keyasint"`
	Sealed  []byte `cbor:"5,keyasint"`
}

func testPass(t testing.TB, s string) *secret.Buffer {
	t.Helper()
	b, err := secret.NewBuffer([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Free)
	return b
}

// rewrite re-encodes the file at path with field 2 replaced by v.
func rewrite(t *testing.T, path string, v any) {
	t.Helper()
	b, _ := os.ReadFile(path)
	var m map[int]cbor.RawMessage
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	p, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	m[2] = p
	out, _ := cbor.Marshal(m)
	os.Remove(path)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Files are written with params as the array [time, memory, threads]
// (docs/PROTOCOL.md section 6), and files in the map layout written before
// still load, as do hand-made files in the specified layout.
func TestParamsLayouts(t *testing.T) {
	dir := t.TempDir()
	pass := testPass(t, "pw")
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	p := Params{Time: 1, Memory: 64, Threads: 1}
	path := filepath.Join(dir, "a.lmid")
	if err := Save(path, id, pass, p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var raw map[int]cbor.RawMessage
	if err := cbor.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var arr []uint32
	if err := cbor.Unmarshal(raw[2], &arr); err != nil || len(arr) != 3 || arr[0] != 1 || arr[1] != 64 || arr[2] != 1 {
		t.Fatalf("params written as %x, want the array [1, 64, 1]", []byte(raw[2]))
	}

	// The map layout, as the old code wrote it: its encoding really is a
	// map keyed by field name (this test would mean nothing otherwise).
	old, err := cbor.Marshal(legacyFile{Version: 1, Params: p})
	if err != nil || !bytes.Contains(old, []byte("Memory")) {
		t.Fatalf("legacy encoding is not the map layout: %x", old)
	}
	for _, c := range []struct {
		name string
		v    any
	}{
		{"map", map[string]uint32{"Time": 1, "Memory": 64, "Threads": 1}},
		{"array", []uint32{1, 64, 1}},
	} {
		q := filepath.Join(dir, c.name+".lmid")
		os.Link(path, q)
		rewrite(t, q, c.v)
		got, err := Load(q, pass)
		if err != nil {
			t.Fatalf("%s layout: %v", c.name, err)
		}
		if !bytes.Equal(got.PublicBytes(), id.PublicBytes()) {
			t.Fatalf("%s layout: another identity", c.name)
		}
		got.Close()
	}
	for _, bad := range []any{[]uint32{1, 64}, []uint32{1, 64, 1, 1}, map[string]uint32{"Time": 1}, map[string]uint32{"Time": 1, "Memory": 64, "Threads": 1, "X": 1}, "x", 7} {
		q := filepath.Join(dir, "bad.lmid")
		os.Link(path, q)
		rewrite(t, q, bad)
		if _, err := Load(q, pass); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("params %v: %v, want ErrCorrupt", bad, err)
		}
		os.Remove(q)
	}
}

// A file asking for more than the limit is refused before any argon2 work,
// with an error naming the parameter, the limit and how to raise it; raised,
// the limit lets it load. Every file the defaults write loads within the
// default limit.
func TestCostLimit(t *testing.T) {
	if DefaultParams.within(DefaultMaxParams) != nil {
		t.Fatal("files written with the defaults exceed the default limit")
	}
	dir := t.TempDir()
	pass := testPass(t, "pw")
	id, _ := Generate()
	defer id.Close()
	path := filepath.Join(dir, "big.lmid")
	if err := Save(path, id, pass, Params{Time: 1, Memory: 64, Threads: 1}); err != nil {
		t.Fatal(err)
	}
	// The attack: a file that asks for 16 passes over 1 GiB.
	rewrite(t, path, []uint32{16, 1 << 20, 4})
	_, err := Load(path, pass)
	if !errors.Is(err, ErrCost) || !errors.Is(err, keystore.ErrKeystore) {
		t.Fatalf("1 GiB file: %v, want ErrCost", err)
	}
	for _, want := range []string{"big.lmid", "memory", "1048576", "262144", "SetMaxParams"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	rewrite(t, path, []uint32{17, 64, 1})
	if _, err := Load(path, pass); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("17 passes: %v, want ErrCorrupt (beyond any limit)", err)
	}
	// Within a raised limit the file is read (the wrong-passphrase answer
	// shows argon2 ran: the params were altered, so the key differs).
	rewrite(t, path, []uint32{2, 64, 1})
	ks, err := Open(dir, []byte("pw"), &Params{Time: 1, Memory: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	ks.SetMaxParams(Params{Time: 1, Memory: 64, Threads: 1})
	if _, err := ks.Open("big"); !errors.Is(err, ErrCost) || !strings.Contains(err.Error(), "time") {
		t.Fatalf("2 passes over a limit of 1: %v", err)
	}
	ks.SetMaxParams(DefaultMaxParams)
	if _, err := ks.Open("big"); !errors.Is(err, keystore.ErrWrongPIN) {
		t.Fatalf("within the limit: %v", err)
	}
	// A keystore never writes what it could not read back.
	ks.SetMaxParams(Params{Time: 1, Memory: 32, Threads: 1})
	if _, err := ks.Generate("new"); !errors.Is(err, ErrCost) {
		t.Fatalf("writing above the limit: %v", err)
	}
}

// Sign is crypto/ed25519's signature byte for byte, for messages on the
// stack path and the locked-buffer path, and allocates nothing on the heap
// but the signature it returns (so nothing secret is left for the garbage
// collector to find).
func TestSignMatchesStdlib(t *testing.T) {
	for i := range 40 {
		seed := make([]byte, 32)
		rand.Read(seed)
		id, err := FromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 64, 200, maxStackMessage, maxStackMessage + 1, 5000} {
			msg := make([]byte, n)
			rand.Read(msg)
			got, err := id.Sign(nil, msg, crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			if want := ed25519.Sign(ed25519.NewKeyFromSeed(seed), msg); !bytes.Equal(got, want) {
				t.Fatalf("seed %d, %d-byte message: signature differs from crypto/ed25519", i, n)
			}
		}
		if i == 0 {
			msg := make([]byte, 200)
			if n := testing.AllocsPerRun(20, func() { id.Sign(nil, msg, crypto.Hash(0)) }); n > 1 {
				t.Fatalf("Sign allocates %v heap objects, want only the signature", n)
			}
		}
		id.Close()
	}
}
