package core

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/chacha20poly1305"
)

// A Session is the per-message symmetric ratchet that follows the handshake.
// Each direction has a chain key; message n's key is
//
//	mk = HMAC-SHA256(ck, 0x01), then ck = HMAC-SHA256(ck, 0x02)
//
// so a message key is used once and the current state reveals no earlier
// message. The whole state of a session lives in this struct (so it can be
// sealed to disk later); its secrets are locked slots: two when idle, plus at
// most Window skipped message keys.
type Session struct {
	mu          sync.Mutex
	suite       keystore.Suite
	peer        keystore.PublicKey
	hash        [32]byte
	k           *chains
	sendN       uint64 // number of the next message to send
	recvN       uint64 // number of the next message the receive chain yields
	window      int
	maxAge      time.Duration
	maxMessages uint64
	closed      bool
}

// chains holds a session's locked slots, apart from the Session so that a
// cleanup can free them when a Session is dropped without Close.
type chains struct {
	send, recv *[32]byte
	skipped    map[uint64]skippedKey
}

func (c *chains) free() {
	freeKey(c.send)
	freeKey(c.recv)
	c.send, c.recv = nil, nil
	for _, sk := range c.skipped {
		freeKey(sk.k)
	}
	c.skipped = nil
}

type skippedKey struct {
	k  *[32]byte
	at time.Time
}

// maxJump bounds the chain steps one message may cost a receiver (a lost run
// longer than this needs a new handshake): a forged counter buys an attacker
// at most this many HMACs.
const maxJump = 1024

func newSession(st *symmetric, initiator bool, suite keystore.Suite, peer keystore.PublicKey, c Config) (*Session, error) {
	s := &Session{suite: suite, peer: peer, hash: st.h, window: c.Window, maxAge: c.SkippedMaxAge, maxMessages: c.MaxMessages, k: &chains{}}
	if err := newKeys(&s.k.send, &s.k.recv); err != nil {
		return nil, err
	}
	runtime.AddCleanup(s, (*chains).free, s.k)
	// Split: the initiator sends with the first key.
	if initiator {
		st.split(s.k.send, s.k.recv)
	} else {
		st.split(s.k.recv, s.k.send)
	}
	return s, nil
}

// Suite is the handshake suite the session came from.
func (s *Session) Suite() keystore.Suite { return s.suite }

// Peer is the remote party's static public key, authenticated by the handshake.
func (s *Session) Peer() keystore.PublicKey { return s.peer }

// HandshakeHash is Noise's h at the end of the handshake, for channel binding.
func (s *Session) HandshakeHash() [32]byte { return s.hash }

func transportAD(n uint64) []byte {
	var ad [9]byte
	ad[0] = kindTransport
	binary.BigEndian.PutUint64(ad[1:], n)
	return ad[:]
}

// step derives the message key at the chain's position into mk and advances ck.
func step(ck, mk *[32]byte) {
	hmacInto(mk, ck[:], []byte{1})
	hmacInto(ck, ck[:], []byte{2})
}

// Encrypt seals plaintext as the next transport packet.
func (s *Session) Encrypt(plaintext []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("encrypt: %w", ErrState)
	}
	if 2+len(plaintext)+tagSize > maxMessage {
		return nil, fmt.Errorf("encrypt: %w: plaintext too long", ErrMalformed)
	}
	if s.sendN >= s.maxMessages {
		return nil, fmt.Errorf("encrypt: %w", ErrLimit)
	}
	mk, err := newTempKey()
	if err != nil {
		return nil, err
	}
	defer freeKey(mk)
	n := s.sendN
	// The packet is built in place: header, 16-bit number, ciphertext.
	bodyLen := 2 + len(plaintext) + chacha20poly1305.Overhead
	pkt := header(kindTransport, bodyLen)
	pkt = binary.BigEndian.AppendUint16(slices.Grow(pkt, bodyLen), uint16(n))
	ad := transportAD(n)
	Protect(func() {
		step(s.k.send, mk)
		pkt = sealRaw(mk, 0, pkt, ad, plaintext)
	})
	s.sendN++
	return pkt, nil
}

// reconstruct expands a 16-bit truncated message number to the one closest to
// the next expected (RFC 9000, appendix A.3).
func reconstruct(next uint64, t uint16) uint64 {
	const win, half = 1 << 16, 1 << 15
	c := next&^(win-1) | uint64(t)
	switch {
	case c+half <= next && c < 1<<62-win:
		return c + win
	case c > next+half && c >= win:
		return c - win
	}
	return c
}

// Decrypt opens a transport packet. Late and reordered messages within the
// window decrypt exactly once. Any failure leaves the session as it was.
func (s *Session) Decrypt(packet []byte) ([]byte, error) {
	body, err := decodePacket(packet, kindTransport)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if len(body) < 2+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("decrypt: %w: too short", ErrMalformed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("decrypt: %w", ErrState)
	}
	now := time.Now()
	s.expire(now)
	n := reconstruct(s.recvN, binary.BigEndian.Uint16(body))
	ad, ct := transportAD(n), body[2:]
	if n >= s.maxMessages {
		return nil, fmt.Errorf("decrypt: %w", ErrLimit)
	}
	if n < s.recvN {
		sk, ok := s.k.skipped[n]
		if !ok {
			if s.recvN-n <= uint64(s.window) {
				return nil, fmt.Errorf("decrypt: %w", ErrReplay)
			}
			return nil, fmt.Errorf("decrypt: %w", ErrTooOld)
		}
		pt, err := open(sk.k, 0, ad, ct)
		if err != nil {
			return nil, fmt.Errorf("decrypt: %w", err)
		}
		delete(s.k.skipped, n)
		freeKey(sk.k)
		return pt, nil
	}
	if n-s.recvN > maxJump {
		return nil, fmt.Errorf("decrypt: %w: too far ahead", ErrTooOld)
	}
	// Work on a copy of the chain (temporary slots: ck replaces s.k.recv on
	// success) and open the message before anything else is allocated, so
	// a forged packet costs HMACs but never locked memory.
	ck, err := newTempKey()
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	mk, err := newTempKey()
	if err != nil {
		freeKey(ck)
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	defer freeKey(mk)
	pt := make([]byte, 0, len(ct))
	Protect(func() {
		*ck = *s.k.recv
		for i := s.recvN; i <= n; i++ {
			step(ck, mk)
		}
		pt, err = openRaw(mk, 0, pt, ad, ct)
	})
	if err != nil {
		freeKey(ck)
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	s.keepSkipped(n, now, mk)
	freeKey(s.k.recv)
	s.k.recv = ck
	s.recvN = n + 1
	s.expire(now)
	return pt, nil
}

// keepSkipped stores the keys of the messages between recvN and n that are
// still inside the window, re-deriving them from the receive chain (scratch
// is a free slot). When locked memory is short it keeps fewer, the latest:
// the others count as lost, and the session goes on.
func (s *Session) keepSkipped(n uint64, now time.Time, scratch *[32]byte) {
	want := min(n-s.recvN, uint64(s.window-1))
	var keys []*[32]byte
	for range want {
		k, err := newKey()
		if err != nil {
			break
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return
	}
	if s.k.skipped == nil {
		s.k.skipped = make(map[uint64]skippedKey)
	}
	first := n - uint64(len(keys))
	Protect(func() {
		var discard [32]byte
		*scratch = *s.k.recv
		for i := s.recvN; i < n; i++ {
			if i < first {
				step(scratch, &discard)
				continue
			}
			k := keys[i-first]
			step(scratch, k)
			s.k.skipped[i] = skippedKey{k, now}
		}
		Wipe(discard[:])
	})
}

// expire drops skipped keys that are older than maxAge or have fallen out of
// the window.
func (s *Session) expire(now time.Time) {
	for i, sk := range s.k.skipped {
		if now.Sub(sk.at) > s.maxAge || s.recvN-i > uint64(s.window) {
			freeKey(sk.k)
			delete(s.k.skipped, i)
		}
	}
	if len(s.k.skipped) == 0 {
		s.k.skipped = nil
	}
}

// Close wipes the session's keys. Further use returns ErrState.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.k.free()
}
