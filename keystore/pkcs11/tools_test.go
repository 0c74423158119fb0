package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/loramesh/loramesh-core/keystore"
)

// Checks with code we did not write: OpenSC's pkcs11-tool and OpenSSL.

func tool(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	base := []string{"--module", tokA.Module, "--token-label", tokA.Label}
	return exec.Command("pkcs11-tool", append(base, args...)...).CombinedOutput()
}

func TestPkcs11ToolSeesSensitiveKeys(t *testing.T) {
	ks := openKS(t, tokA)
	id := newIdentity(t, ks, "tooled")
	out, err := tool(t, "--login", "--pin", string(tokA.PIN), "--list-objects", "--type", "privkey", "--id", hex.EncodeToString(id.id))
	if err != nil {
		t.Fatalf("pkcs11-tool: %v", err) // its output may echo nothing secret, but skip it
	}
	var access []string
	for line := range strings.Lines(string(out)) {
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), "Access:"); ok {
			access = append(access, strings.TrimSpace(a))
		}
	}
	if len(access) != 2 { // the P-256 and the X25519 private keys
		t.Fatalf("pkcs11-tool lists %d private keys, want 2:\n%s", len(access), out)
	}
	for _, a := range access {
		flags := strings.Split(a, ", ")
		for _, f := range []string{"sensitive", "always sensitive", "never extractable", "local"} {
			if !strings.Contains(", "+a+",", ", "+f+",") {
				t.Errorf("private key access %q lacks %q", a, f)
			}
		}
		for _, f := range flags {
			if f == "extractable" {
				t.Errorf("private key is extractable: %q", a)
			}
		}
	}
	// Reading the private value fails (pkcs11-tool cannot even try: it
	// answers "reading private keys not supported" and exits 0).
	for _, h := range []p11.ObjectHandle{id.priv, id.xPriv} {
		err := ks.t.do(func(sh p11.SessionHandle) error {
			_, err := ks.t.mod.ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
			return err
		})
		if !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Fatalf("reading CKA_VALUE: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
	}
}

func TestOpenSSLVerifiesSignature(t *testing.T) {
	ks := openKS(t, tokA)
	// P-256 only, so the CKA_ID names one public key.
	id := newIdentity(t, ks, "openssl", keystore.P256)
	dir := t.TempDir()
	der, pem, msg, sig := filepath.Join(dir, "pub.der"), filepath.Join(dir, "pub.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "sig")
	// Public objects are private: reading them takes the PIN.
	if out, err := tool(t, "--login", "--pin", string(tokA.PIN), "--read-object", "--type", "pubkey", "--id", hex.EncodeToString(id.id), "-o", der); err != nil {
		t.Fatalf("pkcs11-tool export: %v\n%s", err, out)
	}
	if out, err := exec.Command("openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	m := []byte("a contact card, signed on the token")
	d := sha256.Sum256(m)
	s, err := id.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(msg, m, 0o600)
	os.WriteFile(sig, s, 0o600)
	verify := func() ([]byte, error) {
		return exec.Command("openssl", "dgst", "-sha256", "-verify", pem, "-signature", sig, msg).CombinedOutput()
	}
	if out, err := verify(); err != nil || !bytes.Contains(out, []byte("Verified OK")) {
		t.Fatalf("openssl rejects the token's signature: %v\n%s", err, out)
	}
	m[0] ^= 1
	os.WriteFile(msg, m, 0o600)
	if out, err := verify(); err == nil {
		t.Fatalf("openssl accepts a signature over another message:\n%s", out)
	}
}
