package core

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/keystore"
)

// Kind is a packet's kind (docs/PROTOCOL.md §1). Wire format version 2: a
// packet is one kind byte, whose high nibble is the version, then its body,
// which runs to the end of the frame. Contact cards are files, not radio
// packets, and keep their CBOR array form [5, body, signature].
type Kind uint8

const (
	KindInitX25519 Kind = 0x21 // e || enc(s) || enc(payload)
	KindInitP256   Kind = 0x22 // same, for the P-256 suite
	KindResponse   Kind = 0x23 // hint || e || enc(payload)
	KindTransport  Kind = 0x24 // hint || ciphertext
	KindCard       Kind = 0x05 // [5, body, signature] in CBOR

	// Kinds 0x25-0x2f are reserved for later packets of version 2 (a relay
	// header for multi-hop routing among them).
	kindReservedLast Kind = 0x2f
)

// InitKind is the kind of a message 1 of suite s.
func InitKind(s keystore.Suite) (Kind, error) {
	switch s {
	case keystore.X25519:
		return KindInitX25519, nil
	case keystore.P256:
		return KindInitP256, nil
	}
	return 0, ErrUnsupportedSuite
}

// InitSuite is the suite of a message-1 kind.
func (k Kind) InitSuite() (keystore.Suite, bool) {
	switch k {
	case KindInitX25519:
		return keystore.X25519, true
	case KindInitP256:
		return keystore.P256, true
	}
	return 0, false
}

// Size limits (docs/PROTOCOL.md §1): every packet body's Noise message is at
// most 65,535 bytes; senders refuse payloads that would not fit.
const (
	maxMessage = 65535
	maxPacket  = 1 + HintSize + maxMessage
	tagSize    = prim.TagSize // ChaCha20-Poly1305

	// HintSize is the length of the hints that let a receiver find, without
	// trying keys, the handshake a response answers and the session and
	// message number of a transport packet.
	HintSize = 4

	// MaxPlaintext bounds a transport message's plaintext.
	MaxPlaintext = maxMessage - tagSize
)

// MaxInitPayload bounds the payload of a message 1 of suite s: e, enc(s)
// and the payload's tag come first.
func MaxInitPayload(s keystore.Suite) int { return maxMessage - 2*s.PublicKeySize() - 2*tagSize }

// MaxReplyPayload bounds the payload of a message 2 of suite s.
func MaxReplyPayload(s keystore.Suite) int { return maxMessage - s.PublicKeySize() - tagSize }

// InitSize is the size of a message 1 of suite s with a payload of n bytes.
func InitSize(s keystore.Suite, n int) int { return 1 + 2*s.PublicKeySize() + 2*tagSize + n }

// ResponseSize is the size of a message 2 of suite s with a reply of n bytes.
func ResponseSize(s keystore.Suite, n int) int { return 1 + HintSize + s.PublicKeySize() + tagSize + n }

// EncryptedSize is the size of the transport packet for n bytes of plaintext.
func EncryptedSize(n int) int { return 1 + HintSize + n + tagSize }

// PayloadSize returns the size of what opening p would give: a message 1's
// payload, a message 2's payload (of suite s, which the packet does not say)
// or a transport plaintext. ok is false if p is too short to be one; the
// packet is then refused, with nothing changed, by the call that opens it.
// For callers that must size output buffers before a call that commits.
func PayloadSize(p []byte, s keystore.Suite) (n int, ok bool) {
	k, err := PacketKind(p)
	if err != nil {
		return 0, false
	}
	switch k {
	case KindInitX25519, KindInitP256:
		is, _ := k.InitSuite()
		n = len(p) - InitSize(is, 0)
	case KindResponse:
		n = len(p) - ResponseSize(s, 0)
	case KindTransport:
		n = len(p) - EncryptedSize(0)
	default:
		return 0, false
	}
	return n, n >= 0 && len(p) <= maxPacket
}

// PacketKind returns the kind of a packet for dispatch from its first bytes;
// the call that opens it checks the rest. Version 1 packets (CBOR arrays
// other than cards) and reserved kinds give ErrVersion.
func PacketKind(p []byte) (Kind, error) {
	switch {
	case len(p) == 0:
		return 0, fmt.Errorf("empty packet: %w", ErrMalformed)
	case p[0] >= byte(KindInitX25519) && p[0] <= byte(KindTransport):
		return Kind(p[0]), nil
	case p[0] > byte(KindTransport) && p[0] <= byte(kindReservedLast):
		return 0, fmt.Errorf("kind %#x is reserved: %w", p[0], ErrVersion)
	case p[0] == 0x83 && len(p) > 1 && p[1] == byte(KindCard):
		return KindCard, nil
	case (p[0] == 0x82 || p[0] == 0x83) && len(p) > 1 && p[1] < 24:
		return 0, fmt.Errorf("a version 1 packet (kind %d): %w", p[1], ErrVersion)
	}
	return 0, fmt.Errorf("unknown packet kind %#x: %w", p[0], ErrMalformed)
}

// body returns p's body after checking its kind and size.
func body(p []byte, want Kind) ([]byte, error) {
	k, err := PacketKind(p)
	if err != nil {
		return nil, err
	}
	if k != want {
		return nil, fmt.Errorf("unexpected packet kind %#x: %w", byte(k), ErrMalformed)
	}
	if len(p) > maxPacket {
		return nil, fmt.Errorf("packet too long: %w", ErrMalformed)
	}
	return p[1:], nil
}

// Hint returns the hint of a response or transport packet: the key under
// which the receiver finds the pending handshake or the session it belongs
// to (Initiator.ResponseHint, Demux).
func Hint(p []byte) (uint32, bool) {
	k, err := PacketKind(p)
	if err != nil || (k != KindResponse && k != KindTransport) || len(p) < 1+HintSize {
		return 0, false
	}
	return binary.BigEndian.Uint32(p[1:]), true
}

// CBOR for cards: canonical (RFC 8949 core deterministic) encoding; the
// decoder accepts only bytes this encoder would produce.
var (
	encMode, _ = cbor.CoreDetEncOptions().EncMode()
	decMode, _ = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   4,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		DefaultMapType:    nil,
	}.DecMode()
)

// maxCard bounds a card's encoding, checked before decoding.
const maxCard = 4096

// strictUnmarshal decodes b into v and insists that b is exactly v's
// canonical encoding: no over-long integers or lengths, no trailing bytes.
func strictUnmarshal(b []byte, v any) error {
	if len(b) > maxCard {
		return fmt.Errorf("too long: %w", ErrMalformed)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("not valid CBOR of the expected shape: %w", ErrMalformed)
	}
	if c, err := encMode.Marshal(v); err != nil || !bytes.Equal(c, b) {
		return fmt.Errorf("non-canonical encoding: %w", ErrMalformed)
	}
	return nil
}
