package messenger

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/loramesh/loramesh-core/core"
)

// The engine's formats inside the core's packets (docs/PROTOCOL.md §6, §7).

// Handshake payloads. Message 1 carries the initiator's timestamp (a
// monotonic value for replay protection across restarts, also its epoch for
// this session) and the first 10 bytes of its identity, which the responder
// checks against the contact whose DH key the handshake authenticated.
// Message 2 carries the responder's timestamp, its epoch. Both timestamps
// are milliseconds since the Unix epoch in 6 bytes, big endian.
const (
	tsSize    = 6
	init1Size = tsSize + core.FingerprintSize
	maxTS     = 1<<48 - 1
)

func encodeInit(ts uint64, id [32]byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, ts)[8-tsSize:]
	return append(b, id[:core.FingerprintSize]...)
}

func decodeInit(p []byte) (ts uint64, claim []byte, err error) {
	if len(p) != init1Size {
		return 0, nil, fmt.Errorf("message 1 payload of %d bytes: %w", len(p), ErrProtocol)
	}
	return getTS(p), p[tsSize:], nil
}

func encodeResp(ts uint64) []byte { return binary.BigEndian.AppendUint64(nil, ts)[8-tsSize:] }

func decodeResp(p []byte) (uint64, error) {
	if len(p) != tsSize {
		return 0, fmt.Errorf("message 2 payload of %d bytes: %w", len(p), ErrProtocol)
	}
	return getTS(p), nil
}

func getTS(p []byte) uint64 {
	var b [8]byte
	copy(b[8-tsSize:], p)
	return binary.BigEndian.Uint64(b[:])
}

// prologue binds the responder's identity into the handshake (§6): an
// initiator that took someone else's DH key from a card gets no session.
func prologue(responderID [32]byte) []byte {
	return append([]byte("loramesh v2 responder "), responderID[:]...)
}

// Frames: a transport plaintext is a sequence of frames, acknowledgements
// and confirmations first, at most one data frame last (it runs to the end).
const (
	frameData    = 0x10 // | dataFragmented | dataTime | dataOrig
	frameAck     = 0x20 // | ackOrig | ackPartial
	frameConfirm = 0x30

	dataFragmented = 0x01
	dataTime       = 0x02
	dataOrig       = 0x04
	ackOrig        = 0x01
	ackPartial     = 0x02

	maxSeq       = 1<<16 - 1
	maxFragments = 255
	minFragment  = 220 // a fragment's text on a 255-byte frame
)

// msgID names a message for its whole life: the epoch of the session its
// sender first sent it in (the sender's handshake timestamp) and its number
// in that session.
type msgID struct {
	epoch uint64
	seq   uint16
}

// dataFrame is one fragment of a message.
type dataFrame struct {
	seq   uint16
	orig  uint64 // the message's epoch when it differs from the session's (0: the session's)
	time  int64  // seconds from the message's epoch to when it was written; only on fragment 0
	idx   int
	count int // 1: not fragmented
	text  []byte
}

// ackFrame acknowledges a whole message, or (partial) the fragments of it
// received so far.
type ackFrame struct {
	seq     uint16
	orig    uint64 // as in dataFrame
	partial []byte // bitmap of the fragments received, nil for the whole message
}

type frames struct {
	acks    []ackFrame
	confirm bool
	data    *dataFrame
}

func (d *dataFrame) headerSize() int {
	n := 3
	if d.idx == 0 {
		n += len(binary.AppendVarint(nil, d.time))
	}
	if d.orig != 0 {
		n += tsSize
	}
	if d.count > 1 {
		n += 2
	}
	return n
}

func (a *ackFrame) size() int {
	n := 3
	if a.orig != 0 {
		n += tsSize
	}
	if a.partial != nil {
		n += 1 + len(a.partial)
	}
	return n
}

func putTS(b []byte, ts uint64) []byte {
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], ts)
	return append(b, t[8-tsSize:]...)
}

func (f *frames) encode() []byte {
	var b []byte
	for _, a := range f.acks {
		t := byte(frameAck)
		if a.orig != 0 {
			t |= ackOrig
		}
		if a.partial != nil {
			t |= ackPartial
		}
		b = binary.BigEndian.AppendUint16(append(b, t), a.seq)
		if a.orig != 0 {
			b = putTS(b, a.orig)
		}
		if a.partial != nil {
			b = append(append(b, byte(len(a.partial))), a.partial...)
		}
	}
	if f.confirm {
		b = append(b, frameConfirm)
	}
	if d := f.data; d != nil {
		t := byte(frameData)
		if d.count > 1 {
			t |= dataFragmented
		}
		if d.idx == 0 {
			t |= dataTime
		}
		if d.orig != 0 {
			t |= dataOrig
		}
		b = binary.BigEndian.AppendUint16(append(b, t), d.seq)
		if d.idx == 0 {
			b = binary.AppendVarint(b, d.time)
		}
		if d.orig != 0 {
			b = putTS(b, d.orig)
		}
		if d.count > 1 {
			b = append(b, byte(d.idx), byte(d.count))
		}
		b = append(b, d.text...)
	}
	return b
}

// decodeFrames parses a transport plaintext strictly: every field in range,
// nothing left over, flags of this version only.
func decodeFrames(b []byte) (frames, error) {
	var f frames
	bad := func(what string) (frames, error) { return frames{}, fmt.Errorf("%s: %w", what, ErrProtocol) }
	for len(b) > 0 {
		t := b[0]
		switch t & 0xf0 {
		case frameAck:
			if t&^(frameAck|ackOrig|ackPartial) != 0 || len(b) < 3 {
				return bad("ack frame")
			}
			a := ackFrame{seq: binary.BigEndian.Uint16(b[1:])}
			b = b[3:]
			if t&ackOrig != 0 {
				if len(b) < tsSize {
					return bad("ack epoch")
				}
				if a.orig = getTS(b); a.orig == 0 {
					return bad("ack epoch")
				}
				b = b[tsSize:]
			}
			if t&ackPartial != 0 {
				if len(b) < 1 || b[0] == 0 || b[0] > (maxFragments+7)/8 || len(b) < 1+int(b[0]) {
					return bad("ack bitmap")
				}
				a.partial = slices.Clone(b[1 : 1+b[0]])
				b = b[1+b[0]:]
			}
			if len(f.acks) >= maxAcks {
				return bad("too many acks")
			}
			f.acks = append(f.acks, a)
		case frameConfirm:
			if t != frameConfirm || f.confirm {
				return bad("confirm frame")
			}
			f.confirm = true
			b = b[1:]
		case frameData:
			if t&^(frameData|dataFragmented|dataTime|dataOrig) != 0 || len(b) < 3 {
				return bad("data frame")
			}
			d := &dataFrame{seq: binary.BigEndian.Uint16(b[1:]), count: 1}
			b = b[3:]
			if t&dataTime != 0 {
				v, n := binary.Varint(b)
				if n <= 0 || v > maxTimeDelta || v < -maxTimeDelta {
					return bad("data time")
				}
				d.time, b = v, b[n:]
			}
			if t&dataOrig != 0 {
				if len(b) < tsSize {
					return bad("data epoch")
				}
				if d.orig = getTS(b); d.orig == 0 {
					return bad("data epoch")
				}
				b = b[tsSize:]
			}
			if t&dataFragmented != 0 {
				if len(b) < 2 || b[1] < 2 || b[0] >= b[1] {
					return bad("fragment numbers")
				}
				d.idx, d.count, b = int(b[0]), int(b[1]), b[2:]
			}
			if (d.idx == 0) != (t&dataTime != 0) {
				return bad("time on a fragment other than the first")
			}
			d.text, b = slices.Clone(b), nil
			f.data = d
		default:
			return bad(fmt.Sprintf("unknown frame type %#x", t))
		}
	}
	return f, nil
}

// maxAcks bounds the acknowledgements one packet may carry.
const maxAcks = 32

// maxTimeDelta bounds a message's time field (2^34 s, some 500 years), so
// it fits 5 bytes; maxDataHeader is a data frame header at its largest.
const (
	maxTimeDelta  = 1 << 34
	maxDataHeader = 1 + 2 + 5 + tsSize + 2
)
