//go:build !(js && wasm)

package messenger

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A second process on the same state directory is refused, naming the
// first; a crash's temporary file is cleaned at the next open.
func TestStoreLock(t *testing.T) {
	dir := t.TempDir()
	id := fixedIdentity(t, 1)
	s, err := OpenStore(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir, id); !errors.Is(err, ErrStateInUse) || !strings.Contains(err.Error(), "process") {
		t.Fatalf("second open: %v", err)
	}
	if err := s.Save([]byte("x")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/.tmp-123", []byte("torn"), 0o600)
	s.Close()
	s, err = OpenStore(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if b, _ := s.Load(); string(b) != "x" {
		t.Fatal("state not kept")
	}
	if _, err := os.Stat(dir + "/.tmp-123"); err == nil {
		t.Fatal("a crash's temporary file was left")
	}
}

// The state file is sealed: the contacts' names, cards and queued text
// appear nowhere in it; another identity cannot open it (ErrStateOwner,
// naming the file), a damaged one is ErrStateFile, and both are left as
// they were.
func TestStoreSealed(t *testing.T) {
	n, a, b, _ := setup(t)
	talk(t, n, a, b, "the first message")
	b.down = true
	a.send(t, n.now, "bob", "queued words that must not leak")
	n.run(time.Second)
	dir := t.TempDir()
	s, err := OpenStore(dir, a.id)
	if err != nil {
		t.Fatal(err)
	}
	st := a.e.State()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, stateName)
	file, _ := os.ReadFile(path)
	for _, secret := range []string{"bob", "queued words", string(card(t, b.id, "bob")[10:30])} {
		if bytes.Contains(file, []byte(secret)) {
			t.Fatalf("%q in the state file in clear", secret)
		}
	}
	if !bytes.Contains(st, []byte("queued words")) {
		t.Fatal("the queued message is not in the state at all: the check above proves nothing")
	}

	s, _ = OpenStore(dir, b.id)
	if _, err := s.Load(); !errors.Is(err, ErrStateOwner) || !strings.Contains(err.Error(), path) {
		t.Fatalf("another identity: %v", err)
	}
	s.Close()
	bad := bytes.Clone(file)
	bad[len(bad)-1] ^= 1
	os.WriteFile(path, bad, 0o600)
	s, _ = OpenStore(dir, a.id)
	defer s.Close()
	if _, err := s.Load(); err == nil {
		t.Fatal("damaged state opened")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, bad) {
		t.Fatal("a refused state file was changed")
	}
}

// A plain CBOR state file from before sealing is read, and sealed when saved.
func TestStoreReadsUnsealedState(t *testing.T) {
	n, a, b, _ := setup(t)
	talk(t, n, a, b, "hello")
	dir := t.TempDir()
	st := a.e.State()
	os.WriteFile(filepath.Join(dir, stateName), st, 0o600)
	s, err := OpenStore(dir, a.id)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Load()
	if err != nil || !bytes.Equal(got, st) {
		t.Fatalf("legacy state: %v", err)
	}
	e, err := New(a.id, Config{}, got, n.now)
	if err != nil || len(e.Contacts()) != 1 {
		t.Fatalf("legacy state does not load: %v", err)
	}
	s.Save(got)
	if file, _ := os.ReadFile(filepath.Join(dir, stateName)); bytes.Contains(file, []byte("bob")) {
		t.Fatal("still in clear after a save")
	}
}
