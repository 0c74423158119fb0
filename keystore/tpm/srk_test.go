package tpm

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/loramesh/loramesh-core/keystore"
)

// capture records the bytes go-tpm would send.
type capture struct{ b []byte }

func (c *capture) Send(cmd []byte) ([]byte, error) {
	c.b = append([]byte(nil), cmd...)
	return nil, errors.New("captured")
}

// interposer sits on the bus. While on, it answers every CreatePrimary with
// a storage key of its own choosing (here: another primary the TPM makes,
// whose public area it would know the private key of in a real attack), so
// that session salts are encrypted to its key. It counts the salted
// sessions started.
type interposer struct {
	shared
	mu       sync.Mutex
	on       bool
	evil     []byte
	sessions int
}

const (
	ccCreatePrimary    = 0x131
	ccStartAuthSession = 0x176
)

func newInterposer(t *testing.T) *interposer {
	var c capture
	tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(&c)
	if len(c.b) < 10 {
		t.Fatal("no CreatePrimary captured")
	}
	return &interposer{evil: c.b}
}

func (p *interposer) Send(cmd []byte) ([]byte, error) {
	p.mu.Lock()
	on := p.on
	if len(cmd) >= 10 && binary.BigEndian.Uint32(cmd[6:10]) == ccStartAuthSession {
		p.sessions++
	}
	p.mu.Unlock()
	if on && len(cmd) >= 10 && binary.BigEndian.Uint32(cmd[6:10]) == ccCreatePrimary {
		return p.shared.Send(append([]byte(nil), p.evil...))
	}
	return p.shared.Send(cmd)
}

func (p *interposer) set(on bool) {
	p.mu.Lock()
	p.on, p.sessions = on, 0
	p.mu.Unlock()
}

// The storage key an identity was created under is recorded; a substituted
// one is refused at Open and at use, before any session is salted to it.
func TestSubstitutedSRK(t *testing.T) {
	ks := simKeystore(t, "1234")
	generate(t, ks, "k").Close()
	srk, err := os.ReadFile(ks.srkPath("k"))
	if err != nil || len(srk) != 69 {
		t.Fatalf("NAME.srk: %q %v", srk, err)
	}

	bus := newInterposer(t)
	bus.set(true)
	evil, err := OpenTransport(bus, Config{Dir: ks.cfg.Dir, Auth: pin("1234")})
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	id, err := evil.Open("k")
	if !errors.Is(err, ErrSRKMismatch) || !errors.Is(err, keystore.ErrKeystore) || id != nil {
		t.Fatalf("open under a substituted SRK: %v", err)
	}
	if bus.sessions != 0 {
		t.Fatalf("%d sessions salted to the substituted key", bus.sessions)
	}

	// At use: the SRK is re-created (its context lost, as after a TPM
	// restart) while the interposer is on.
	bus.set(false)
	good, err := OpenTransport(bus, Config{Dir: ks.cfg.Dir, Auth: pin("1234")})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	o, err := good.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	_, peer := softPeer(t)
	var z [32]byte
	if err := o.DH(peer, &z); err != nil {
		t.Fatal(err)
	}
	bus.set(true)
	good.d.mu.Lock()
	good.d.srkCtx, good.d.srkName = nil, tpm2.TPM2BName{}
	o.(*Identity).dhS, o.(*Identity).ctx = nil, nil
	good.d.mu.Unlock()
	if err := o.DH(peer, &z); !errors.Is(err, ErrSRKMismatch) {
		t.Fatalf("DH under a substituted SRK: %v", err)
	}
	if bus.sessions != 0 {
		t.Fatalf("%d sessions salted to the substituted key", bus.sessions)
	}
	bus.set(false)
	good.d.mu.Lock()
	good.d.srkCtx, good.d.srkName = nil, tpm2.TPM2BName{}
	good.d.mu.Unlock()
	if err := o.DH(peer, &z); err != nil {
		t.Fatalf("DH once the SRK is genuine again: %v", err)
	}
}

// A key file from before storage keys were recorded opens, and the SRK seen
// then is recorded.
func TestSRKRecordedOnFirstOpen(t *testing.T) {
	ks := simKeystore(t, "")
	generate(t, ks, "old").Close()
	want, _ := os.ReadFile(ks.srkPath("old"))
	os.Remove(ks.srkPath("old"))
	id, err := ks.Open("old")
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	if got, err := os.ReadFile(ks.srkPath("old")); err != nil || string(got) != string(want) {
		t.Fatalf("SRK recorded at first open: %q, want %q (%v)", got, want, err)
	}
	if err := ks.Delete("old"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ks.srkPath("old")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Delete left NAME.srk")
	}
}
