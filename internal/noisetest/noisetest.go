// Package noisetest adapts the P-256 suite to github.com/flynn/noise, the
// independent implementation our tests and benchmarks compare against.
package noisetest

import (
	"crypto/ecdh"
	"crypto/elliptic"
	"errors"
	"io"

	"github.com/flynn/noise"
	"github.com/loramesh/loramesh-core/keystore"
)

// P256 is a noise.DHFunc for P-256 with 33-byte compressed public keys and
// the x-coordinate as the DH output, written with the standard library only
// (crypto/ecdh, crypto/elliptic's point compression), so that it checks the
// project's own key parsing instead of reusing it.
type P256 struct{}

func (P256) GenerateKeypair(r io.Reader) (noise.DHKey, error) {
	k, err := ecdh.P256().GenerateKey(r)
	if err != nil {
		return noise.DHKey{}, err
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), k.PublicKey().Bytes())
	return noise.DHKey{Private: k.Bytes(), Public: elliptic.MarshalCompressed(elliptic.P256(), x, y)}, nil
}

func (P256) DH(priv, pub []byte) ([]byte, error) {
	k, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), pub)
	if x == nil {
		return nil, errors.New("noisetest: not a compressed P-256 point")
	}
	e, err := ecdh.P256().NewPublicKey(elliptic.Marshal(elliptic.P256(), x, y))
	if err != nil {
		return nil, err
	}
	return k.ECDH(e)
}

func (P256) DHLen() int     { return 33 }
func (P256) DHName() string { return "P256" }

// Suite returns flynn/noise's cipher suite for s.
func Suite(s keystore.Suite) noise.CipherSuite {
	if s == keystore.P256 {
		return noise.NewCipherSuite(P256{}, noise.CipherChaChaPoly, noise.HashSHA256)
	}
	return noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)
}
