package memory

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/loramesh/loramesh-core/internal/secret"
)

// FuzzParseFile: any bytes give a file or ErrCorrupt, never a panic, and
// never parameters outside the bounds Load relies on.
func FuzzParseFile(f *testing.F) {
	dir := f.TempDir()
	id, err := Generate()
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, "seed.lmid")
	pass, err := secret.NewBuffer([]byte("fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	defer pass.Free()
	if err := Save(path, id, pass, Params{Time: 1, Memory: 8, Threads: 1}); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseFile(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if p.params.Memory > maxMemory || p.params.Time > maxTime || p.params.Threads == 0 {
			t.Fatal("parameters out of bounds accepted")
		}
	})
}
