// Package softhsm provisions throwaway SoftHSM2 tokens for tests, `make run`
// and developers.
//
// SoftHSM2 finds its tokens through the SOFTHSM2_CONF environment variable,
// which it reads once, at C_Initialize: New sets it for the whole process,
// so create every token before the module is first opened, and use one Env
// per process at a time.
package softhsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePaths are where Debian, Ubuntu and Fedora put the module.
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// ErrNotInstalled means the module or softhsm2-util is missing.
var ErrNotInstalled = errors.New("SoftHSM2 not installed (apt-get install softhsm2)")

// Module returns the first SoftHSM2 module found in ModulePaths.
func Module() (string, error) {
	for _, p := range ModulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no libsofthsm2.so in %s", ErrNotInstalled, strings.Join(ModulePaths, ", "))
}

// Env is a SoftHSM2 configuration whose tokens live in a temporary directory.
type Env struct {
	Dir    string // temporary directory, removed by Cleanup
	Conf   string // the SOFTHSM2_CONF file
	Module string // path of libsofthsm2.so

	oldConf string
	hadConf bool
}

// Token is one initialised token.
type Token struct {
	Label  string
	Module string
	PIN    []byte // the user PIN; test material, never print it
}

// New makes a temporary directory with its own softhsm2.conf and points
// SOFTHSM2_CONF at it (process wide, until Cleanup).
func New() (*Env, error) {
	mod, err := Module()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return nil, fmt.Errorf("%w: softhsm2-util not on PATH", ErrNotInstalled)
	}
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	e := &Env{Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf"), Module: mod}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
		filepath.Join(dir, "tokens"))
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	if err := os.WriteFile(e.Conf, []byte(conf), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	e.oldConf, e.hadConf = os.LookupEnv("SOFTHSM2_CONF")
	os.Setenv("SOFTHSM2_CONF", e.Conf)
	return e, nil
}

// InitToken initialises a token labelled label with user PIN pin (the SO PIN
// is pin too: these tokens are throwaway).
func (e *Env) InitToken(label, pin string) (*Token, error) {
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		// The output names the label and slot, never the PIN.
		return nil, fmt.Errorf("softhsm: init token %q: %v: %s", label, err, strings.TrimSpace(string(out)))
	}
	return &Token{Label: label, Module: e.Module, PIN: []byte(pin)}, nil
}

// URI returns the token's RFC 7512 URI, without the PIN.
func (t *Token) URI() string {
	return "pkcs11:token=" + escape(t.Label, "") + "?module-path=" + escape(t.Module, "/")
}

// escape percent-encodes all but unreserved characters and those in keep.
func escape(s, keep string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~"+keep, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Cleanup removes the directory and restores SOFTHSM2_CONF. Close every
// keystore on the module first.
func (e *Env) Cleanup() error {
	if e.hadConf {
		os.Setenv("SOFTHSM2_CONF", e.oldConf)
	} else {
		os.Unsetenv("SOFTHSM2_CONF")
	}
	return os.RemoveAll(e.Dir)
}
