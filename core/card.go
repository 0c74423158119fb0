package core

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"math/big"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// A contact card binds a display name, a signing key and one DH key per
// suite, signed by the signing key: [5, body, signature] where body is the
// canonical CBOR map below and the signature covers cardContext || body.

const cardContext = "loramesh card v1"

// Signature algorithms on cards.
const (
	SigEd25519   = 1 // memory identities
	SigECDSAP256 = 2 // hardware identities: SHA-256, raw r||s
)

type cardBody struct {
	Version    int              `cbor:"1,keyasint"`
	Name       string           `cbor:"2,keyasint"`
	SigAlg     int              `cbor:"3,keyasint"`
	SigningKey []byte           `cbor:"4,keyasint"`
	DH         map[uint8][]byte `cbor:"5,keyasint"`
}

type cardPacket struct {
	_    struct{} `cbor:",toarray"`
	Kind uint8
	Body []byte
	Sig  []byte
}

// Card is a verified contact card.
type Card struct {
	Name       string
	SigAlg     int
	SigningKey crypto.PublicKey // ed25519.PublicKey or *ecdsa.PublicKey
	dh         map[keystore.Suite]keystore.PublicKey
	raw        []byte
	fp         [32]byte
}

const maxName = 64

func validName(n string) bool {
	if n == "" || len(n) > maxName || !utf8.ValidString(n) {
		return false
	}
	// Printable only: no control characters, and no format characters
	// (U+202E right-to-left override, zero-width joiners) that would let
	// one name display as another.
	return strings.IndexFunc(n, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// NewCard creates and signs id's card under name.
func NewCard(id keystore.Identity, name string) ([]byte, error) {
	if !validName(name) {
		return nil, fmt.Errorf("%w: name must be 1-%d bytes of printable UTF-8", ErrBadCard, maxName)
	}
	b := cardBody{Version: 1, Name: name, DH: map[uint8][]byte{}}
	switch pub := id.Public().(type) {
	case ed25519.PublicKey:
		b.SigAlg, b.SigningKey = SigEd25519, pub
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: signing key not P-256", ErrUnsupportedSuite)
		}
		b.SigAlg, b.SigningKey = SigECDSAP256, elliptic.MarshalCompressed(pub.Curve, pub.X, pub.Y)
	default:
		return nil, fmt.Errorf("%w: unsupported signing key type", ErrUnsupportedSuite)
	}
	for _, s := range id.Suites() {
		k, err := id.DHPublic(s)
		if err != nil {
			return nil, fmt.Errorf("card: %w", err)
		}
		b.DH[uint8(s)] = k.Bytes()
	}
	body, err := encMode.Marshal(b)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(cardContext), body...)
	var sig []byte
	if b.SigAlg == SigEd25519 {
		sig, err = id.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		d := sha256.Sum256(msg)
		var der []byte
		if der, err = id.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
			sig, err = derToRaw(der)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("card: signing: %w", err)
	}
	return encMode.Marshal(cardPacket{Kind: kindCard, Body: body, Sig: sig})
}

func derToRaw(der []byte) ([]byte, error) {
	var r, s []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, fmt.Errorf("%w: bad ECDSA signature from signer", ErrKeystore)
	}
	ri, si := new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)
	if ri.Sign() == 0 || si.Sign() == 0 || ri.BitLen() > 256 || si.BitLen() > 256 {
		return nil, fmt.Errorf("%w: bad ECDSA signature from signer", ErrKeystore)
	}
	return append(ri.FillBytes(make([]byte, 32)), si.FillBytes(make([]byte, 32))...), nil
}

// ParseCard decodes and verifies a card strictly: canonical CBOR, known
// fields only, valid keys, a valid signature.
func ParseCard(b []byte) (*Card, error) {
	var p cardPacket
	if err := strictUnmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCard, err)
	}
	if p.Kind != kindCard {
		return nil, fmt.Errorf("%w: not a card", ErrBadCard)
	}
	var body cardBody
	if err := strictUnmarshal(p.Body, &body); err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrBadCard, err)
	}
	if body.Version != 1 {
		return nil, fmt.Errorf("%w: %w", ErrBadCard, ErrVersion)
	}
	if !validName(body.Name) {
		return nil, fmt.Errorf("%w: invalid name", ErrBadCard)
	}
	c := &Card{Name: body.Name, SigAlg: body.SigAlg, dh: map[keystore.Suite]keystore.PublicKey{}, raw: bytes.Clone(b)}
	msg := append([]byte(cardContext), p.Body...)
	switch body.SigAlg {
	case SigEd25519:
		if len(body.SigningKey) != ed25519.PublicKeySize || len(p.Sig) != ed25519.SignatureSize ||
			!ed25519.Verify(body.SigningKey, msg, p.Sig) {
			return nil, fmt.Errorf("%w: bad Ed25519 signature", ErrBadCard)
		}
		c.SigningKey = ed25519.PublicKey(body.SigningKey)
	case SigECDSAP256:
		x, y := elliptic.UnmarshalCompressed(elliptic.P256(), body.SigningKey)
		if x == nil || len(p.Sig) != 64 {
			return nil, fmt.Errorf("%w: bad ECDSA key or signature", ErrBadCard)
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
		d := sha256.Sum256(msg)
		r, s := new(big.Int).SetBytes(p.Sig[:32]), new(big.Int).SetBytes(p.Sig[32:])
		if !ecdsa.Verify(pub, d[:], r, s) {
			return nil, fmt.Errorf("%w: bad ECDSA signature", ErrBadCard)
		}
		c.SigningKey = pub
	default:
		return nil, fmt.Errorf("%w: unknown signature algorithm", ErrBadCard)
	}
	if len(body.DH) == 0 {
		return nil, fmt.Errorf("%w: no DH keys", ErrBadCard)
	}
	for s, kb := range body.DH {
		k, err := keystore.ParsePublicKey(keystore.Suite(s), kb)
		if err != nil {
			return nil, fmt.Errorf("%w: DH key: %w", ErrBadCard, err)
		}
		c.dh[keystore.Suite(s)] = k
	}
	h := sha256.New()
	h.Write([]byte("loramesh fingerprint v1"))
	h.Write([]byte{byte(body.SigAlg)})
	h.Write(body.SigningKey)
	h.Sum(c.fp[:0])
	return c, nil
}

// Bytes returns the card's encoding.
func (c *Card) Bytes() []byte { return append([]byte(nil), c.raw...) }

// DHKey returns the card's key for suite s.
func (c *Card) DHKey(s keystore.Suite) (keystore.PublicKey, bool) {
	k, ok := c.dh[s]
	return k, ok
}

// Fingerprint is 80 bits of SHA-256("loramesh fingerprint v1" || alg ||
// signing key) in base32, four groups of four, short enough to read aloud.
func (c *Card) Fingerprint() string {
	s := base32.StdEncoding.EncodeToString(c.fp[:10])
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// ChooseSuite picks the handshake suite two cards share: 25519 when both
// have it, P-256 otherwise.
func ChooseSuite(a, b *Card) (keystore.Suite, error) {
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		_, x := a.dh[s]
		_, y := b.dh[s]
		if x && y {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: the cards share no suite", ErrUnsupportedSuite)
}
