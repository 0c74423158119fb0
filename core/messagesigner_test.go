package core_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/loramesh/loramesh-core/core"
)

// hashingSigner is a P-256 identity that, like WebCrypto's ECDSA, signs
// messages and cannot sign a digest: Sign always fails, SignMessage hashes
// the message itself.
type hashingSigner struct {
	*p256Identity
	messages int
}

var errDigest = errors.New("this signer cannot sign a digest")

func (h *hashingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errDigest
}

func (h *hashingSigner) SignMessage(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("only ECDSA with SHA-256")
	}
	h.messages++
	d := sha256.Sum256(msg)
	return ecdsa.SignASN1(r, h.priv, d[:])
}

var _ crypto.MessageSigner = (*hashingSigner)(nil)

// Cards and signed messages of a signer that hashes for itself verify, and
// the core never hands it a digest (its Sign would fail the card).
func TestMessageSignerCard(t *testing.T) {
	id := &hashingSigner{p256Identity: newP256Identity()}
	b, err := core.NewCard(id, "webcrypto")
	if err != nil {
		t.Fatal(err)
	}
	c, err := core.ParseCard(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.SigningKey().Alg() != core.SigECDSAP256 || id.messages != 1 {
		t.Fatalf("alg %d, %d messages signed", c.SigningKey().Alg(), id.messages)
	}
	sig, err := core.SignMessage(id, []byte("the plan"))
	if err != nil {
		t.Fatal(err)
	}
	if c.SigningKey().VerifyMessage([]byte("the plan"), sig) != nil || c.SigningKey().VerifyMessage([]byte("the plan!"), sig) == nil {
		t.Fatal("message signature")
	}
	// A plain crypto.Signer (hardware identities) still gets the digest.
	if _, err := core.NewCard(struct{ *p256Identity }{id.p256Identity}, "x"); err != nil {
		t.Fatal("a plain signer must still work:", err)
	}
}
