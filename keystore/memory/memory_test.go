package memory_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

var fast = &memory.Params{Time: 1, Memory: 64, Threads: 1}

func TestMain(m *testing.M) {
	if os.Getenv(idleEnv) != "" {
		os.Exit(idleChild())
	}
	if os.Getenv(writerEnv) != "" {
		os.Exit(writerChild())
	}
	if os.Getenv(custodyEnv) != "" {
		os.Exit(custodyChild())
	}
	os.Exit(m.Run())
}

// The X25519 key of a seed is the same whether computed from the clamped
// SHA-512 half (RFC 8032/7748) or as the Montgomery form u = (1+y)/(1-y) of
// the Ed25519 public key; the second is computed here with math/big.
func TestDeriveX25519BothWays(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	for i := range 20 {
		seed := bytes.Repeat([]byte{byte(i*13 + 1)}, 32)
		id, err := memory.FromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		// Way 1: crypto/ecdh with the RFC 8032 scalar.
		h := sha512.Sum512(seed)
		k, _ := ecdh.X25519().NewPrivateKey(h[:32])
		if !bytes.Equal(k.PublicKey().Bytes(), id.DeriveX25519().Bytes()) {
			t.Fatal("X25519 public differs from crypto/ecdh")
		}
		// Way 2: birational map of the Ed25519 public key.
		ed := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		if !bytes.Equal(ed, id.PublicBytes()) {
			t.Fatal("Ed25519 public key")
		}
		yb := bytes.Clone(ed)
		yb[31] &= 0x7f
		for l, r := 0, 31; l < r; l, r = l+1, r-1 {
			yb[l], yb[r] = yb[r], yb[l]
		}
		y := new(big.Int).SetBytes(yb)
		num := new(big.Int).Add(big.NewInt(1), y)
		den := new(big.Int).Sub(big.NewInt(1), y)
		den.Mod(den, p).ModInverse(den, p)
		u := num.Mul(num, den).Mod(num, p).FillBytes(make([]byte, 32))
		for l, r := 0, 31; l < r; l, r = l+1, r-1 {
			u[l], u[r] = u[r], u[l]
		}
		if !bytes.Equal(u, id.DeriveX25519().Bytes()) {
			t.Fatal("Montgomery form of the Ed25519 key differs")
		}
		id.Close()
	}
}

func TestDHAndSign(t *testing.T) {
	a, _ := memory.Generate()
	b, _ := memory.Generate()
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		pa, _ := a.DHPublic(s)
		pb, _ := b.DHPublic(s)
		var x, y [32]byte
		if err := a.DH(pb, &x); err != nil {
			t.Fatal(err)
		}
		if err := b.DH(pa, &y); err != nil || x != y || x == [32]byte{} {
			t.Fatalf("%v DH disagrees: %v", s, err)
		}
	}
	sig, err := a.Sign(nil, []byte("msg"), crypto.Hash(0))
	if err != nil || !ed25519.Verify(a.Public().(ed25519.PublicKey), []byte("msg"), sig) {
		t.Fatal("Ed25519 signature does not verify")
	}
	if _, err := a.Sign(nil, make([]byte, 32), crypto.SHA256); err == nil {
		t.Fatal("hashed signing accepted")
	}
	a.Close()
	if _, err := a.Sign(nil, nil, crypto.Hash(0)); !errors.Is(err, keystore.ErrClosed) {
		t.Fatal("closed identity signed")
	}
}

func TestKeystoreFiles(t *testing.T) {
	dir := t.TempDir()
	ks, err := memory.Open(dir, []byte("correct horse"), fast)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ks.Generate("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Generate("alice"); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	path := filepath.Join(dir, "alice.lmid")
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	orig, _ := os.ReadFile(path)
	again, err := ks.Open("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Public().(ed25519.PublicKey), id.Public().(ed25519.PublicKey)) {
		t.Fatal("reloaded identity differs")
	}
	if names, _ := ks.List(); len(names) != 1 || names[0] != "alice" {
		t.Fatalf("list %v", names)
	}

	wrong, _ := memory.Open(dir, []byte("wrong"), fast)
	if _, err := wrong.Open("alice"); !errors.Is(err, keystore.ErrWrongPIN) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	for _, damaged := range [][]byte{orig[:len(orig)/2], append(bytes.Clone(orig), 1), {}, []byte("garbage")} {
		os.WriteFile(filepath.Join(dir, "bad.lmid"), damaged, 0o600)
		if _, err := ks.Open("bad"); !errors.Is(err, memory.ErrCorrupt) {
			t.Fatalf("damaged file: %v", err)
		}
	}
	flipped := bytes.Clone(orig)
	flipped[len(flipped)-3] ^= 1
	os.WriteFile(filepath.Join(dir, "flip.lmid"), flipped, 0o600)
	if _, err := ks.Open("flip"); !errors.Is(err, keystore.ErrWrongPIN) {
		t.Fatalf("altered ciphertext: %v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, orig) {
		t.Fatal("a failed open changed the file")
	}
	for _, n := range []string{"../x", "", ".hidden", "a/b", "-rf"} {
		if _, err := ks.Open(n); !errors.Is(err, keystore.ErrInvalidName) {
			t.Fatalf("name %q: %v", n, err)
		}
	}
	if err := ks.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Open("alice"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatal("deleted identity opened")
	}
	ks.Close()
	if _, err := ks.Generate("bob"); !errors.Is(err, keystore.ErrClosed) {
		t.Fatal("closed keystore generated")
	}
}

// Parameters that Load would refuse are refused before anything is written,
// so an identity can never be saved unreadable.
func TestParamsBounds(t *testing.T) {
	for _, p := range []memory.Params{{Time: 17, Memory: 64, Threads: 1}, {Time: 0, Memory: 64, Threads: 1},
		{Time: 1, Memory: 64, Threads: 0}, {Time: 1, Memory: 4, Threads: 1}, {Time: 1, Memory: 2 << 20, Threads: 1}} {
		if _, err := memory.Open(t.TempDir(), []byte("pw"), &p); !errors.Is(err, memory.ErrParams) {
			t.Fatalf("%+v: %v", p, err)
		}
	}
}

// Every error path returns a nil interface (never an interface holding a
// nil *Identity), and Close on whatever it returned is safe.
func TestErrorPathsReturnNil(t *testing.T) {
	dir := t.TempDir()
	ks, err := memory.Open(dir, []byte("pw"), fast)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	g, _ := ks.Generate("x")
	g.Close()
	os.WriteFile(filepath.Join(dir, "junk.lmid"), []byte("junk"), 0o600)
	wrong, _ := memory.Open(dir, []byte("wrong"), fast)
	defer wrong.Close()
	for name, f := range map[string]func() (keystore.Identity, error){
		"missing":   func() (keystore.Identity, error) { return ks.Open("missing") },
		"corrupt":   func() (keystore.Identity, error) { return ks.Open("junk") },
		"bad name":  func() (keystore.Identity, error) { return ks.Open("../x") },
		"wrong pw":  func() (keystore.Identity, error) { return wrong.Open("x") },
		"exists":    func() (keystore.Identity, error) { return ks.Generate("x") },
		"bad suite": func() (keystore.Identity, error) { return ks.Generate("y", 9) },
	} {
		id, err := f()
		if err == nil || id != nil {
			t.Fatalf("%s: %v, %#v: want an error and a nil interface", name, err, id)
		}
	}
	var nilID *memory.Identity
	if err := nilID.Close(); err != nil {
		t.Fatal(err)
	}
}
