package core

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/internal/onion"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/text/secure/precis"
)

// A contact card binds a display name, a signing key, one DH key per suite
// and optionally an onion address, signed by the signing key: [5, body,
// signature] where body is the canonical CBOR map below and the signature
// covers cardContext || body.

type cardBody struct {
	Version    int              `cbor:"1,keyasint"`
	Name       string           `cbor:"2,keyasint"`
	SigAlg     int              `cbor:"3,keyasint"`
	SigningKey []byte           `cbor:"4,keyasint"`
	DH         map[uint8][]byte `cbor:"5,keyasint"`
	Onion      string           `cbor:"6,keyasint,omitempty"` // absent: not reachable over Tor
}

type cardPacket struct {
	_    struct{} `cbor:",toarray"`
	Kind Kind
	Body []byte
	Sig  []byte
}

// Card is a verified contact card.
type Card struct {
	Name  string
	key   SigningKey
	dh    map[keystore.Suite]keystore.PublicKey
	onion string
	raw   []byte
}

// ErrBadName: a display name outside the rule of docs/PROTOCOL.md §5.
var ErrBadName = errs.New("invalid display name")

// PrepareName returns name as a card carries it (docs/PROTOCOL.md §5): the
// PRECIS Nickname profile (RFC 8266) enforced, with Unicode 15.0.0 tables
// (precis.UnicodeVersion), which maps non-ASCII spaces to U+0020, drops
// leading and trailing spaces, merges inner runs, normalises to NFKC and
// refuses controls and unassigned, default-ignorable (U+034F, U+FE0F,
// U+3164, U+115F) and bidi-control code points; then at most 64 bytes and
// no blanks the profile allows (U+2800 braille blank, U+1D159 null notehead).
func PrepareName(name string) (string, error) {
	p, err := precis.Nickname.String(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadName, err)
	}
	if len(p) > 64 || strings.ContainsAny(p, "\u2800\U0001D159") {
		return "", fmt.Errorf("%w: longer than 64 bytes, or a blank code point", ErrBadName)
	}
	return p, nil
}

// CardOptions are a card's optional fields.
type CardOptions struct {
	Onion string // a v3 onion address (internal/onion.Check) where the node listens over Tor
}

// NewCard creates and signs id's card under name.
func NewCard(id keystore.Identity, name string) ([]byte, error) {
	return NewCardWith(id, name, CardOptions{})
}

// NewCardWith creates and signs id's card under name with optional fields.
func NewCardWith(id keystore.Identity, name string, opt CardOptions) ([]byte, error) {
	if opt.Onion != "" {
		if err := onion.Check(opt.Onion); err != nil {
			return nil, fmt.Errorf("card: %w: %w", ErrBadCard, err)
		}
	}
	name, err := PrepareName(name)
	if err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	key, err := SigningKeyOf(id)
	if err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	b := cardBody{Version: 1, Name: name, SigAlg: key.alg, SigningKey: key.b, DH: map[uint8][]byte{}, Onion: opt.Onion}
	for _, s := range id.Suites() {
		k, err := id.DHPublic(s)
		if err != nil {
			return nil, fmt.Errorf("card: %w", err)
		}
		b.DH[uint8(s)] = k.Bytes()
	}
	body, err := encMode.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	sig, err := sign(id, key.alg, cardContext, body)
	if err != nil {
		return nil, fmt.Errorf("card: signing: %w", err)
	}
	return encMode.Marshal(cardPacket{Kind: KindCard, Body: body, Sig: sig})
}

// ParseCard decodes and verifies a card strictly: canonical CBOR, known
// fields only, valid keys, a valid signature.
func ParseCard(b []byte) (*Card, error) {
	var p cardPacket
	if err := strictUnmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCard, err)
	}
	if p.Kind != KindCard {
		return nil, fmt.Errorf("%w: not a card", ErrBadCard)
	}
	var body cardBody
	if err := strictUnmarshal(p.Body, &body); err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrBadCard, err)
	}
	if body.Version != 1 {
		return nil, fmt.Errorf("%w: %w", ErrBadCard, ErrVersion)
	}
	// One name, one encoding: only the prepared form is accepted.
	if n, err := PrepareName(body.Name); err != nil || n != body.Name {
		return nil, fmt.Errorf("%w: %w", ErrBadCard, ErrBadName)
	}
	key, err := ParseSigningKey(body.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: %w", ErrBadCard, err)
	}
	if key.alg != body.SigAlg {
		return nil, fmt.Errorf("%w: signature algorithm %d does not match the signing key", ErrBadCard, body.SigAlg)
	}
	if !key.verify(cardContext, p.Body, p.Sig) {
		return nil, fmt.Errorf("%w: bad signature", ErrBadCard)
	}
	if body.Onion != "" {
		if err := onion.Check(body.Onion); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadCard, err)
		}
	}
	c := &Card{Name: body.Name, key: key, dh: map[keystore.Suite]keystore.PublicKey{}, onion: body.Onion, raw: bytes.Clone(b)}
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
	return c, nil
}

// SigningKey is the key that signed the card: the contact's identity.
func (c *Card) SigningKey() SigningKey { return c.key }

// Bytes returns the card's encoding.
func (c *Card) Bytes() []byte { return append([]byte(nil), c.raw...) }

// DHKey returns the card's key for suite s.
func (c *Card) DHKey(s keystore.Suite) (keystore.PublicKey, bool) {
	k, ok := c.dh[s]
	return k, ok
}

// Onion is the card's v3 onion address ("....onion", checked by
// internal/onion.Check), or "" if it has none.
func (c *Card) Onion() string { return c.onion }

// Fingerprint is the fingerprint of the card's signing key (see
// SigningKey.Fingerprint).
func (c *Card) Fingerprint() string { return c.key.Fingerprint() }

// DHKeys returns the card's DH keys.
func (c *Card) DHKeys() []keystore.PublicKey {
	var ks []keystore.PublicKey
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if k, ok := c.dh[s]; ok {
			ks = append(ks, k)
		}
	}
	return ks
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
