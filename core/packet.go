package core

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/keystore"
)

// Kind is a packet's kind: the first element of its CBOR array, below 24 (one
// byte on air), naming both the packet type and the format version
// (docs/PROTOCOL.md §1). Kinds 1-5 are version 1; the rest are reserved.
type Kind uint8

const (
	KindInitX25519 Kind = 1 // [1, e || enc(s) || enc(payload)]
	KindInitP256   Kind = 2 // same, for the P-256 suite
	KindResponse   Kind = 3 // [3, e || enc(payload)]
	KindTransport  Kind = 4 // [4, n16 || ciphertext]
	KindCard       Kind = 5 // [5, body, signature]
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

// Size limits (docs/PROTOCOL.md §1): every packet body is a Noise message of
// at most 65,535 bytes; senders refuse payloads that would not fit.
const (
	maxMessage = 65535
	maxPacket  = maxMessage + 5 // plus the longest two-element header
	tagSize    = 16             // ChaCha20-Poly1305
	numberSize = 2              // truncated message number of a transport packet

	// MaxPlaintext bounds a transport message's plaintext.
	MaxPlaintext = maxMessage - numberSize - tagSize
)

// MaxInitPayload bounds the payload of a message 1 of suite s: e, enc(s)
// and the payload's tag come first.
func MaxInitPayload(s keystore.Suite) int { return maxMessage - 2*s.PublicKeySize() - 2*tagSize }

// MaxReplyPayload bounds the payload of a message 2 of suite s.
func MaxReplyPayload(s keystore.Suite) int { return maxMessage - s.PublicKeySize() - tagSize }

// InitSize is the size of a message 1 of suite s with a payload of n bytes.
func InitSize(s keystore.Suite, n int) int {
	return framedSize(2*s.PublicKeySize() + 2*tagSize + n)
}

// ResponseSize is the size of a message 2 of suite s with a reply of n bytes.
func ResponseSize(s keystore.Suite, n int) int { return framedSize(s.PublicKeySize() + tagSize + n) }

// EncryptedSize is the size of the transport packet for n bytes of plaintext.
func EncryptedSize(n int) int { return framedSize(numberSize + n + tagSize) }

// PayloadSize reads only the framing of p and returns the size of what
// opening it would give: a message 1's payload, a message 2's payload (of
// suite s, which the packet does not say) or a transport plaintext. ok is
// false if the framing does not parse; the packet is then refused, with
// nothing changed, by the call that decodes it strictly. For callers that
// must size output buffers before a call that commits (the C ABI).
func PayloadSize(p []byte, s keystore.Suite) (n int, ok bool) {
	kind, body, ok := frame(p)
	if !ok {
		return 0, false
	}
	switch kind {
	case KindInitX25519, KindInitP256:
		is, _ := kind.InitSuite()
		n = body - 2*is.PublicKeySize() - 2*tagSize
	case KindResponse:
		n = body - s.PublicKeySize() - tagSize
	case KindTransport:
		n = body - numberSize - tagSize
	default:
		return 0, false
	}
	return n, n >= 0
}

// frame parses the header of a two-element packet: its kind and body length.
func frame(p []byte) (Kind, int, bool) {
	if len(p) < 3 || p[0] != 0x82 || p[1] >= 24 || p[2]>>5 != 2 {
		return 0, 0, false
	}
	ai, h, body := int(p[2]&31), 1, 0
	switch {
	case ai < 24:
		body = ai
	case ai == 24 && len(p) >= 4:
		body, h = int(p[3]), 2
	case ai == 25 && len(p) >= 5:
		body, h = int(binary.BigEndian.Uint16(p[3:])), 3
	case ai == 26 && len(p) >= 7:
		body, h = int(binary.BigEndian.Uint32(p[3:])), 5
	default:
		return 0, 0, false
	}
	if 2+h+body != len(p) {
		return 0, 0, false
	}
	return Kind(p[1]), body, true
}

// PacketKind returns the kind of a packet for dispatch. It checks only the
// first two bytes; the consumer decodes the rest strictly.
func PacketKind(p []byte) (Kind, error) {
	if len(p) < 2 || (p[0] != 0x82 && p[0] != 0x83) {
		return 0, ErrMalformed
	}
	if k := Kind(p[1]); k >= KindInitX25519 && k <= KindCard {
		return k, nil
	}
	return 0, fmt.Errorf("kind %d: %w", p[1], ErrVersion)
}

var (
	// Canonical (RFC 8949 core deterministic) encoding; the decoder accepts
	// only bytes this encoder would produce.
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

type packet struct {
	_    struct{} `cbor:",toarray"`
	Kind Kind
	Body []byte
}

// header returns the canonical encoding of a two-element packet's prefix:
// array(2), kind, byte string length.
func header(kind Kind, n int) []byte {
	h := []byte{0x82, byte(kind)}
	switch {
	case n < 24:
		return append(h, 0x40|byte(n))
	case n < 1<<8:
		return append(h, 0x58, byte(n))
	case n < 1<<16:
		return append(h, 0x59, byte(n>>8), byte(n))
	}
	return append(h, 0x5a, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func framedSize(body int) int { return len(header(0, body)) + body }

// encodePacket frames body as [kind, body]; the decoder below (fxamacker,
// strict) is what checks that this is canonical CBOR.
func encodePacket(kind Kind, body []byte) []byte {
	return append(header(kind, len(body)), body...)
}

// strictUnmarshal decodes b into v and insists that b is exactly v's
// canonical encoding: no over-long integers or lengths, no trailing bytes.
func strictUnmarshal(b []byte, v any) error {
	if len(b) > maxPacket {
		return fmt.Errorf("packet too long: %w", ErrMalformed)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("not a valid packet: %w", ErrMalformed)
	}
	if c, err := encMode.Marshal(v); err != nil || !bytes.Equal(c, b) {
		return fmt.Errorf("non-canonical encoding: %w", ErrMalformed)
	}
	return nil
}

func decodeAny(b []byte) (Kind, []byte, error) {
	if len(b) > maxPacket {
		return 0, nil, fmt.Errorf("packet too long: %w", ErrMalformed)
	}
	var p packet
	if err := decMode.Unmarshal(b, &p); err != nil {
		return 0, nil, fmt.Errorf("not a valid packet: %w", ErrMalformed)
	}
	if p.Kind >= 24 { // a kind of a later version, in two bytes or more
		return 0, nil, fmt.Errorf("kind %d: %w", p.Kind, ErrVersion)
	}
	// Canonical: the bytes must be exactly the shortest-form encoding.
	if h := header(p.Kind, len(p.Body)); len(b) != len(h)+len(p.Body) || !bytes.Equal(b[:len(h)], h) {
		return 0, nil, fmt.Errorf("non-canonical encoding: %w", ErrMalformed)
	}
	if p.Kind < KindInitX25519 || p.Kind > KindTransport {
		return 0, nil, fmt.Errorf("kind %d: %w", p.Kind, ErrVersion)
	}
	return p.Kind, p.Body, nil
}

func decodePacket(b []byte, want Kind) ([]byte, error) {
	kind, body, err := decodeAny(b)
	if err != nil {
		return nil, err
	}
	if kind != want {
		return nil, fmt.Errorf("unexpected packet kind %d: %w", kind, ErrMalformed)
	}
	return body, nil
}
