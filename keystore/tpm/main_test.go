package tpm

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"os"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/loramesh/loramesh-core/internal/tpmsim"
	"github.com/loramesh/loramesh-core/keystore"
)

// shared is the process's one simulator, run outside any secret.Do.
type shared = tpmsim.Transport

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	if os.Getenv(custodyEnv) != "" {
		os.Exit(custodyChild())
	}
	if _, err := tpmsim.Open(); err != nil {
		fmt.Fprintln(os.Stderr, "simulator:", err)
		os.Exit(1)
	}
	code := m.Run()
	closeSoftHSM()
	os.Exit(code)
}

// pin returns an Auth callback that always answers v (nil: no auth).
func pin(v string) func(string) ([]byte, error) {
	return func(string) ([]byte, error) { return []byte(v), nil }
}

func simKeystore(t testing.TB, auth string) *Keystore {
	t.Helper()
	ks, err := OpenTransport(shared{}, Config{Dir: t.TempDir(), Auth: pin(auth)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close() })
	return ks
}

func generate(t testing.TB, ks *Keystore, name string) *Identity {
	t.Helper()
	id, err := ks.Generate(name, keystore.P256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	return id.(*Identity)
}

// softPeer returns a software P-256 key and its keystore.PublicKey.
func softPeer(t testing.TB) (*ecdh.PrivateKey, keystore.PublicKey) {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keystore.FromECDH(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return k, p
}

// resetDA sends TPM2_DictionaryAttackLockReset (no go-tpm wrapper in
// v0.9.8) with the empty lockout auth, so wrong-auth tests leave no lockout
// behind for other tests sharing the simulator.
func resetDA(t testing.TB, tp transport.TPM) {
	t.Helper()
	cmd := []byte{
		0x80, 0x02, 0, 0, 0, 27, 0, 0, 0x01, 0x39, // sessions tag, size, CC
		0x40, 0, 0, 0x0a, // TPM_RH_LOCKOUT
		0, 0, 0, 9, 0x40, 0, 0, 0x09, 0, 0, 0, 0, 0, // password session, empty auth
	}
	rsp, err := tp.Send(cmd)
	if err != nil || len(rsp) < 10 || rsp[6]|rsp[7]|rsp[8]|rsp[9] != 0 {
		t.Fatalf("DictionaryAttackLockReset: %x %v", rsp, err)
	}
}

// transients lists the transient handles loaded in the TPM.
func transients(t testing.TB, tp transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 64}.Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	return hs.Handle
}
