package core

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// A Session is the per-message symmetric ratchet that follows the handshake
// (docs/PROTOCOL.md §4). Each direction has a chain key; message n's key is
//
//	mk = HMAC-SHA256(ck, 0x01), then ck = HMAC-SHA256(ck, 0x02)
//
// so a message key is used once and the current state reveals no earlier
// message. Its secrets are locked slots: two when idle, plus at most Window
// skipped message keys.
type Session struct {
	mu     sync.Mutex
	suite  keystore.Suite
	peer   keystore.PublicKey
	hash   [32]byte
	k      *keys
	sent   counter
	closed bool
}

// keys holds a session's secrets, apart from the Session so that a cleanup
// can free them when a Session is dropped without Close.
type keys struct {
	send chainKey
	recv recvWindow
}

func (k *keys) free() {
	k.send.free()
	k.send = chainKey{}
	k.recv.free()
}

func newSession(st *symmetric, initiator bool, suite keystore.Suite, peer keystore.PublicKey, c Config) (*Session, error) {
	var send, recv *[32]byte
	if err := secret.NewN(&send, &recv); err != nil {
		return nil, err
	}
	s := &Session{suite: suite, peer: peer, hash: st.h, sent: counter{limit: c.MaxMessages}, k: &keys{
		send: chainKey{send},
		recv: recvWindow{ck: chainKey{recv}, size: c.Window, maxAge: c.SkippedMaxAge, limit: c.MaxMessages},
	}}
	runtime.AddCleanup(s, (*keys).free, s.k)
	// Split: the initiator sends with the first key.
	if initiator {
		st.split(s.k.send, s.k.recv.ck)
	} else {
		st.split(s.k.recv.ck, s.k.send)
	}
	return s, nil
}

// Suite is the handshake suite the session came from.
func (s *Session) Suite() keystore.Suite { return s.suite }

// Peer is the remote party's static public key, authenticated by the handshake.
func (s *Session) Peer() keystore.PublicKey { return s.peer }

// HandshakeHash is Noise's h at the end of the handshake, for channel binding.
func (s *Session) HandshakeHash() [32]byte { return s.hash }

// transportAD is a transport packet's associated data: its kind and the full
// message number.
func transportAD(n uint64) []byte {
	var ad [9]byte
	ad[0] = byte(KindTransport)
	binary.BigEndian.PutUint64(ad[1:], n)
	return ad[:]
}

// Encrypt seals plaintext as the next transport packet.
func (s *Session) Encrypt(plaintext []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("encrypt: %w", ErrState)
	}
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("encrypt: plaintext too long: %w", ErrMalformed)
	}
	mk, err := newTempMessageKey()
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	defer mk.free()
	n, err := s.sent.next()
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	// The packet is built in place: header, 16-bit number, ciphertext.
	bodyLen := numberSize + len(plaintext) + tagSize
	pkt := header(KindTransport, bodyLen)
	pkt = binary.BigEndian.AppendUint16(slices.Grow(pkt, bodyLen), uint16(n))
	ad := transportAD(n)
	secret.Do(func() {
		s.k.send.step(mk)
		pkt = sealRaw(mk.p, 0, pkt, ad, plaintext)
	})
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
	body, err := decodePacket(packet, KindTransport)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if len(body) < numberSize+tagSize {
		return nil, fmt.Errorf("decrypt: too short: %w", ErrMalformed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("decrypt: %w", ErrState)
	}
	n := reconstruct(s.k.recv.next, binary.BigEndian.Uint16(body))
	ad, ct := transportAD(n), body[numberSize:]
	pt := make([]byte, 0, len(ct)) // before secret.Do: nothing allocated inside
	err = s.k.recv.open(n, time.Now(), func(mk messageKey) (err error) {
		pt, err = openRaw(mk.p, 0, pt, ad, ct)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return pt, nil
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
