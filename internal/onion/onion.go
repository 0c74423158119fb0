// Package onion checks and makes tor v3 onion addresses (tor's
// rend-spec-v3 §6), which contact cards carry (docs/PROTOCOL.md §5).
package onion

import (
	"bytes"
	"crypto/sha3"
	"encoding/base32"
	"fmt"
	"strings"

	"filippo.io/edwards25519"

	"github.com/loramesh/loramesh-core/internal/errs"
)

// ErrAddress: not a v3 onion address tor would accept.
var ErrAddress = errs.New("invalid onion address")

// A v3 onion address (tor's rend-spec-v3 §6) names an onion service by its
// Ed25519 public key: base32(pub || checksum || version) in lower case, then
// ".onion", where version is 3 and checksum = SHA3-256(".onion checksum" ||
// pub || version)[:2]. Cards carry one (docs/PROTOCOL.md §5) so a contact
// can be reached over Tor.

// Len is the length of a v3 onion address: 56 base32 characters and
// ".onion".
const Len = 56 + len(".onion")

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Check accepts exactly the v3 onion addresses tor itself writes: 56
// lower-case base32 characters and ".onion", version 3, a matching
// checksum, and a public key tor would accept (a canonical encoding of a
// curve point of prime order, not the identity). Anything else, including
// upper case, is refused, so a card has one encoding.
func Check(s string) error {
	id, found := strings.CutSuffix(s, ".onion")
	if !found || len(s) != Len {
		return fmt.Errorf("not 56 base32 characters and .onion: %w", ErrAddress)
	}
	raw, err := b32.DecodeString(id)
	if err != nil || b32.EncodeToString(raw) != id {
		return fmt.Errorf("not lower-case base32: %w", ErrAddress)
	}
	pub, sum, version := raw[:32], raw[32:34], raw[34]
	if version != 3 {
		return fmt.Errorf("version %d, not 3: %w", version, ErrAddress)
	}
	if !bytes.Equal(checksum(pub), sum) {
		return fmt.Errorf("wrong checksum: %w", ErrAddress)
	}
	if !primeOrderPoint(pub) {
		return fmt.Errorf("not a valid Ed25519 key: %w", ErrAddress)
	}
	return nil
}

// FromKey is the v3 onion address of an Ed25519 public key.
func FromKey(pub []byte) (string, error) {
	if len(pub) != 32 || !primeOrderPoint(pub) {
		return "", fmt.Errorf("not a valid Ed25519 key: %w", ErrAddress)
	}
	raw := append(append(bytes.Clone(pub), checksum(pub)...), 3)
	return b32.EncodeToString(raw) + ".onion", nil
}

func checksum(pub []byte) []byte {
	h := sha3.New256()
	h.Write([]byte(".onion checksum"))
	h.Write(pub)
	h.Write([]byte{3})
	return h.Sum(nil)[:2]
}

// primeOrderPoint: b encodes canonically a point P other than the identity
// with [l]P = identity, as tor's ed25519_validate_pubkey requires. [l]P is
// computed as [l-1]P + P: l-1 is a canonical scalar, and scalar
// multiplication uses its digits, not a reduction that would assume P in
// the prime-order subgroup.
func primeOrderPoint(b []byte) bool {
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil || !bytes.Equal(p.Bytes(), b) || p.Equal(edwards25519.NewIdentityPoint()) == 1 {
		return false
	}
	one := [32]byte{1}
	s, _ := new(edwards25519.Scalar).SetCanonicalBytes(one[:])
	lMinus1 := new(edwards25519.Scalar).Negate(s)
	q := new(edwards25519.Point).ScalarMult(lMinus1, p)
	return q.Add(q, p).Equal(edwards25519.NewIdentityPoint()) == 1
}
