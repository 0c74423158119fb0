package pkcs11

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/loramesh/loramesh-core/internal/softhsm"
	"github.com/loramesh/loramesh-core/keystore"
)

// Tokens shared by the tests: SoftHSM reads SOFTHSM2_CONF at C_Initialize,
// so all of them exist before the module is first loaded.
var (
	env                                       *softhsm.Env
	tokA, tokB, tokFresh, tokGone, tokCustody *softhsm.Token
)

func TestMain(m *testing.M) {
	if os.Getenv(swapEnv) != "" {
		os.Exit(swapChild())
	}
	if os.Getenv(custodyEnv) != "" {
		os.Exit(custodyChild())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if env, err = softhsm.New(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Cleanup()
	for _, p := range []struct {
		tok   **softhsm.Token
		label string
	}{{&tokA, "loramesh-a"}, {&tokB, "loramesh-b"}, {&tokFresh, "loramesh-fresh"}, {&tokGone, "loramesh-gone"}, {&tokCustody, "loramesh-custody"}} {
		pin := make([]byte, 8)
		rand.Read(pin)
		if *p.tok, err = env.InitToken(p.label, hex.EncodeToString(pin)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	registry.Lock()
	if n := len(registry.modules); n != 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "%d modules still loaded after the tests\n", n)
		code = 1
	}
	registry.Unlock()
	return code
}

// openKS opens tok and closes it at the end of the test.
func openKS(t testing.TB, tok *softhsm.Token) *Keystore {
	t.Helper()
	ks, err := OpenURI(tok.URI(), tok.PIN)
	if err != nil {
		t.Fatalf("open %s: %v", tok.Label, err)
	}
	t.Cleanup(func() { ks.Close() })
	return ks
}

// newIdentity makes identity name and deletes it at the end of the test.
func newIdentity(t testing.TB, ks *Keystore, name string, suites ...keystore.Suite) *Identity {
	t.Helper()
	id, err := ks.Generate(name, suites...)
	if err != nil {
		t.Fatalf("generate %s: %v", name, err)
	}
	t.Cleanup(func() {
		id.Close()
		ks.Delete(name)
	})
	return id.(*Identity)
}
