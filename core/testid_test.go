package core_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"sync/atomic"

	"github.com/loramesh/loramesh-core/keystore"
)

// p256Identity is a software stand-in for a hardware identity (ECDSA
// signer, P-256 DH) used to test cards and counting; real hardware is tested
// in keystore/pkcs11 and keystore/tpm.
type p256Identity struct {
	priv *ecdsa.PrivateKey
	ops  atomic.Uint64
}

func newP256Identity() *p256Identity {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &p256Identity{priv: k}
}

func (p *p256Identity) Public() crypto.PublicKey { return &p.priv.PublicKey }
func (p *p256Identity) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	p.ops.Add(1)
	return p.priv.Sign(r, d, o)
}
func (p *p256Identity) Suites() []keystore.Suite { return []keystore.Suite{keystore.P256} }
func (p *p256Identity) DHPublic(s keystore.Suite) (keystore.PublicKey, error) {
	if s != keystore.P256 {
		return keystore.PublicKey{}, keystore.ErrUnsupportedSuite
	}
	e, _ := p.priv.ECDH()
	return keystore.FromECDH(e.PublicKey())
}
func (p *p256Identity) DH(peer keystore.PublicKey, out *[32]byte) error {
	if peer.Suite() != keystore.P256 {
		return keystore.ErrUnsupportedSuite
	}
	p.ops.Add(1)
	e, _ := p.priv.ECDH()
	pk, err := peer.ECDH()
	if err != nil {
		return err
	}
	z, err := e.ECDH(pk)
	copy(out[:], z)
	return err
}
func (p *p256Identity) Close() error          { return nil }
func (p *p256Identity) PrivateKeyOps() uint64 { return p.ops.Load() }

var _ keystore.Identity = (*p256Identity)(nil)
var _ = ecdh.P256
