//go:build !(js && wasm)

package messenger

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// A second process on the same state directory is refused, naming the first.
func TestStoreLock(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); !errors.Is(err, ErrStateInUse) || !strings.Contains(err.Error(), "process") {
		t.Fatalf("second open: %v", err)
	}
	if err := s.Save([]byte("x")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/.state-123", []byte("torn"), 0o600)
	s.Close()
	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if b, _ := s.Load(); string(b) != "x" {
		t.Fatal("state not kept")
	}
	if _, err := os.Stat(dir + "/.state-123"); err == nil {
		t.Fatal("a crash's temporary file was left")
	}
}
