package core

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// A Session is the per-message symmetric ratchet that follows the handshake
// (docs/PROTOCOL.md §4). Each direction has a chain key; message n's key is
//
//	mk = HMAC-SHA256(ck, 0x01), then ck = HMAC-SHA256(ck, 0x02)
//
// so a message key is used once and the current state reveals no earlier
// message. Its secrets are locked slots: four when idle (two chain keys,
// two hint keys), plus at most Window skipped message keys.
type Session struct {
	mu     sync.Mutex
	suite  keystore.Suite
	peer   keystore.PublicKey
	hash   [32]byte
	k      *keys
	sent   counter
	clock  func() time.Time
	closed bool
}

// keys holds a session's secrets, apart from the Session so that a cleanup
// can free them when a Session is dropped without Close.
type keys struct {
	send   chainKey
	sendHK hintKey
	recv   recvWindow
}

func (k *keys) free() {
	k.send.free()
	k.sendHK.free()
	k.send, k.sendHK = chainKey{}, hintKey{}
	k.recv.free()
}

func newSession(st *symmetric, initiator bool, suite keystore.Suite, peer keystore.PublicKey, c Config) (*Session, error) {
	var send, recv, shk, rhk *[32]byte
	if err := secret.NewN(&send, &recv, &shk, &rhk); err != nil {
		return nil, err
	}
	s := &Session{suite: suite, peer: peer, hash: st.h, sent: counter{limit: c.MaxMessages}, clock: c.Clock, k: &keys{
		send: chainKey{send}, sendHK: hintKey{shk},
		recv: recvWindow{ck: chainKey{recv}, hk: hintKey{rhk}, size: c.Window, lookahead: c.Lookahead,
			maxAge: c.SkippedMaxAge, limit: c.MaxMessages},
	}}
	runtime.AddCleanup(s, (*keys).free, s.k)
	// Split: the initiator sends with the first key. Each direction's hint
	// key comes from its first chain key: hk = HMAC-SHA256(ck, 0x03).
	if initiator {
		st.split(s.k.send, s.k.recv.ck)
	} else {
		st.split(s.k.recv.ck, s.k.send)
	}
	secret.Do(func() {
		prim.HMAC(shk, send[:], []byte{3})
		prim.HMAC(rhk, recv[:], []byte{3})
	})
	s.k.recv.init()
	return s, nil
}

// Suite is the handshake suite the session came from.
func (s *Session) Suite() keystore.Suite { return s.suite }

// Peer is the remote party's static public key, authenticated by the handshake.
func (s *Session) Peer() keystore.PublicKey { return s.peer }

// HandshakeHash is Noise's h at the end of the handshake, for channel binding.
func (s *Session) HandshakeHash() [32]byte { return s.hash }

// transportAD is a transport packet's associated data: its kind, its hint
// and the full message number.
func transportAD(hint uint32, n uint64) []byte {
	var ad [1 + HintSize + 8]byte
	ad[0] = byte(KindTransport)
	binary.BigEndian.PutUint32(ad[1:], hint)
	binary.BigEndian.PutUint64(ad[1+HintSize:], n)
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
	// The packet is built in place: kind, hint, ciphertext.
	hint := s.k.sendHK.hints(n, 1)[0]
	pkt := make([]byte, 0, EncryptedSize(len(plaintext)))
	pkt = binary.BigEndian.AppendUint32(append(pkt, byte(KindTransport)), hint)
	ad := transportAD(hint, n)
	secret.Do(func() {
		s.k.send.step(mk)
		pkt = prim.Seal(mk.p, &zeroNonce, pkt, ad, plaintext)
	})
	return pkt, nil
}

// Decrypt opens a transport packet. Late and reordered messages within the
// window decrypt exactly once; a packet whose hint the session does not know
// (too far behind or ahead, another session's, forged) gives ErrTooOld
// without any key work, a duplicate of a recent one ErrReplay. Any failure
// leaves the session as it was.
func (s *Session) Decrypt(packet []byte) ([]byte, error) {
	pt, _, err := s.decrypt(packet)
	return pt, err
}

// decrypt is Decrypt that also reports whether the packet was the newest so
// far (not a late one).
func (s *Session) decrypt(packet []byte) (_ []byte, newest bool, err error) {
	b, err := body(packet, KindTransport)
	if err != nil {
		return nil, false, fmt.Errorf("decrypt: %w", err)
	}
	if len(b) < HintSize+tagSize {
		return nil, false, fmt.Errorf("decrypt: too short: %w", ErrMalformed)
	}
	hint := binary.BigEndian.Uint32(b)
	ct := b[HintSize:]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, fmt.Errorf("decrypt: %w", ErrState)
	}
	now := s.clock()
	s.k.recv.expire(now)
	ns, err := s.k.recv.find(hint)
	for _, n := range ns { // almost always one
		ad := transportAD(hint, n)
		pt := make([]byte, 0, len(ct)) // before secret.Do: nothing allocated inside
		err = s.k.recv.open(n, now, func(mk messageKey) (err error) {
			if pt, err = prim.Open(mk.p, &zeroNonce, pt, ad, ct); err != nil {
				return ErrAuth
			}
			return nil
		})
		if err == nil {
			return pt, n+1 == s.k.recv.next, nil
		}
	}
	return nil, false, fmt.Errorf("decrypt: %w", err)
}

// zeroNonce: every message key seals one message (§4).
var zeroNonce [12]byte

// Close wipes the session's keys. Further use returns ErrState.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.k.recv.notify(nil, s.k.recv.live()) // out of its Demux
	s.k.recv.watch = nil
	s.k.free()
}
