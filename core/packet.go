package core

import (
	"bytes"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Wire format version 1 (docs/PROTOCOL.md). Every packet is a definite-length
// CBOR array whose first element, a kind below 24 (one byte on air), names
// both the packet type and the format version: kinds 1-5 are version 1, the
// rest are reserved for what comes next (6: transport with a DH ratchet key).
const (
	kindInitX25519 = 1 // [1, e || enc(s) || enc(payload)]
	kindInitP256   = 2 // same, for the P-256 suite
	kindResponse   = 3 // [3, e || enc(payload)]
	kindTransport  = 4 // [4, n16 || ciphertext]
	kindCard       = 5 // [5, body, signature]
)

const (
	maxMessage = 65535          // Noise's message limit, for every packet body
	maxPacket  = maxMessage + 5 // plus the longest two-element header
)

// PacketKind returns the kind of a packet for dispatch (1 and 2: handshake
// init, 3: response, 4: transport, 5: contact card). It checks only the
// first two bytes; the consumer decodes the rest strictly.
func PacketKind(p []byte) (int, error) {
	if len(p) < 2 || (p[0] != 0x82 && p[0] != 0x83) {
		return 0, ErrMalformed
	}
	if p[1] < kindInitX25519 || p[1] > kindCard {
		return 0, ErrVersion
	}
	return int(p[1]), nil
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
	Kind uint8
	Body []byte
}

// header returns the canonical encoding of a two-element packet's prefix:
// array(2), kind, byte string length.
func header(kind uint8, n int) []byte {
	h := []byte{0x82, kind}
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

// encodePacket frames body as [kind, body]; the decoder below (fxamacker,
// strict) is what checks that this is canonical CBOR.
func encodePacket(kind uint8, body []byte) []byte {
	return append(header(kind, len(body)), body...)
}

// strictUnmarshal decodes b into v and insists that b is exactly v's
// canonical encoding: no over-long integers or lengths, no trailing bytes.
func strictUnmarshal(b []byte, v any) error {
	if len(b) > maxPacket {
		return fmt.Errorf("%w: packet too long", ErrMalformed)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: not a valid packet", ErrMalformed)
	}
	if c, err := encMode.Marshal(v); err != nil || !bytes.Equal(c, b) {
		return fmt.Errorf("%w: non-canonical encoding", ErrMalformed)
	}
	return nil
}

func decodeAny(b []byte) (uint8, []byte, error) {
	if len(b) > maxPacket {
		return 0, nil, fmt.Errorf("%w: packet too long", ErrMalformed)
	}
	var p packet
	if err := decMode.Unmarshal(b, &p); err != nil {
		return 0, nil, fmt.Errorf("%w: not a valid packet", ErrMalformed)
	}
	// Canonical: the bytes must be exactly the shortest-form encoding.
	if h := header(p.Kind, len(p.Body)); len(b) != len(h)+len(p.Body) || !bytes.Equal(b[:len(h)], h) {
		return 0, nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformed)
	}
	if p.Kind < kindInitX25519 || p.Kind > kindTransport {
		return 0, nil, ErrVersion
	}
	return p.Kind, p.Body, nil
}

func decodePacket(b []byte, want uint8) ([]byte, error) {
	kind, body, err := decodeAny(b)
	if err != nil {
		return nil, err
	}
	if kind != want {
		return nil, fmt.Errorf("%w: unexpected packet kind", ErrMalformed)
	}
	return body, nil
}
