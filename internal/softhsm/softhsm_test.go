package softhsm

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	old, had := os.LookupEnv("SOFTHSM2_CONF")
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("SOFTHSM2_CONF") != e.Conf {
		t.Fatal("SOFTHSM2_CONF not set")
	}
	tok, err := e.InitToken("test token/1", "123456")
	if err != nil {
		t.Fatal(err)
	}
	if want := "pkcs11:token=test%20token%2F1?module-path=" + e.Module; tok.URI() != want {
		t.Fatalf("URI %s, want %s", tok.URI(), want)
	}
	// The token is visible to code we did not write.
	out, err := exec.Command("pkcs11-tool", "--module", tok.Module, "--list-token-slots").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test token/1") {
		t.Fatalf("pkcs11-tool does not see the token: %v\n%s", err, out)
	}
	if _, err := e.InitToken("bad", ""); err == nil {
		t.Fatal("token with an empty PIN")
	}
	if err := e.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.Dir); !os.IsNotExist(err) {
		t.Fatal("directory left behind")
	}
	if now, has := os.LookupEnv("SOFTHSM2_CONF"); now != old || has != had {
		t.Fatal("SOFTHSM2_CONF not restored")
	}
}

func TestModuleNotFound(t *testing.T) {
	saved := ModulePaths
	defer func() { ModulePaths = saved }()
	ModulePaths = []string{"/nonexistent/libsofthsm2.so"}
	if _, err := New(); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "/nonexistent/libsofthsm2.so") {
		t.Fatalf("error %v should name the paths tried", err)
	}
}
