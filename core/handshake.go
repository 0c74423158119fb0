package core

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/loramesh/loramesh-core/keystore"
)

// Noise_IK (Noise revision 34, section 7.5):
//
//	<- s
//	...
//	-> e, es, s, ss
//	<- e, ee, se
//
// The local static key never enters the core: es (responder), ss and se
// (initiator) go through keystore.Identity.DH, two calls on each side.

// Config tunes handshakes and the sessions they produce. The zero value (or
// nil) gives the defaults.
type Config struct {
	Prologue []byte    // mixed into h on both sides; must match
	Rand     io.Reader // ephemeral keys; crypto/rand when nil

	Window        int           // receive window in messages (default 64, max 4096)
	SkippedMaxAge time.Duration // a skipped message key is dropped after this (default 10 min)
	MaxMessages   uint64        // per direction; then ErrLimit (default 2^32)
	ReplayCache   int           // responder: initiators whose recent messages 1 are remembered (default 4096)
}

func (c *Config) orDefault() Config {
	var v Config
	if c != nil {
		v = *c
	}
	if v.Rand == nil {
		v.Rand = rand.Reader
	}
	if v.Window <= 0 {
		v.Window = 64
	}
	v.Window = min(v.Window, 4096)
	if v.SkippedMaxAge <= 0 {
		v.SkippedMaxAge = 10 * time.Minute
	}
	if v.MaxMessages == 0 || v.MaxMessages > 1<<62 {
		v.MaxMessages = 1 << 32
	}
	if v.ReplayCache <= 0 {
		v.ReplayCache = 4096
	}
	return v
}

// initialize runs Noise's Initialize for IK: the protocol name, the prologue
// and the pre-message <- s.
func initialize(s keystore.Suite, prologue []byte, rs keystore.PublicKey) (*symmetric, error) {
	st, err := newSymmetric(s.String())
	if err != nil {
		return nil, err
	}
	st.mixHash(prologue)
	st.mixHash(rs.Bytes())
	return st, nil
}

// Initiator is a handshake waiting for message 2. It is single use: Finish
// succeeds once, then the Initiator is spent.
type Initiator struct {
	mu   sync.Mutex
	id   keystore.Identity
	rs   keystore.PublicKey
	cfg  Config
	sec  *pending
	done bool
	bad  int // messages 2 that failed after a DH with the identity
}

// pending is an Initiator's secret state, apart from it so that a cleanup
// can wipe it when an Initiator is dropped unfinished (a lost message 2).
type pending struct {
	st *symmetric
	e  *[32]byte // ephemeral private key
}

func (p *pending) free() {
	p.st.free()
	freeKey(p.e)
	p.st, p.e = nil, nil
}

// maxBadResponses bounds the identity DH operations that forged messages 2
// can cost one handshake (each se is a token or TPM operation): enough to
// ride out a noisy shared channel, few enough that a forger cannot keep a
// TPM busy.
const maxBadResponses = 64

// Initiate writes handshake message 1 to the responder whose static key is rs,
// carrying payload (encrypted, but without forward secrecy against a later
// compromise of rs, as Noise IK's first payload is). It returns the packet to
// send.
func Initiate(id keystore.Identity, rs keystore.PublicKey, payload []byte, cfg *Config) (*Initiator, []byte, error) {
	c := cfg.orDefault()
	suite := rs.Suite()
	s, err := id.DHPublic(suite)
	if err != nil {
		return nil, nil, fmt.Errorf("initiate: %w", err)
	}
	if 2*suite.PublicKeySize()+32+len(payload) > maxMessage {
		return nil, nil, fmt.Errorf("initiate: %w: payload too long", ErrMalformed)
	}
	st, err := initialize(suite, c.Prologue, rs)
	if err != nil {
		return nil, nil, err
	}
	var e, dh *[32]byte
	if err := newKeys(&e, &dh); err != nil {
		st.free()
		return nil, nil, err
	}
	defer freeKey(dh)
	fail := func(step string, err error) (*Initiator, []byte, error) {
		st.free()
		freeKey(e)
		return nil, nil, fmt.Errorf("initiate: %s: %w", step, err)
	}
	// -> e
	ep, err := newEphemeral(suite, c.Rand, e)
	if err != nil {
		return fail("e", err)
	}
	msg := make([]byte, 0, 2*suite.PublicKeySize()+32+len(payload))
	msg = append(msg, ep.Bytes()...)
	st.mixHash(ep.Bytes())
	// es
	if err := ephemeralDH(e, rs, dh); err != nil {
		return fail("es", err)
	}
	st.mixKey(dh)
	// s
	msg = st.encryptAndHash(msg, s.Bytes())
	// ss
	if err := identityDH(id, rs, dh); err != nil {
		return fail("ss", err)
	}
	st.mixKey(dh)
	msg = st.encryptAndHash(msg, payload)
	kind := uint8(kindInitX25519)
	if suite == keystore.P256 {
		kind = kindInitP256
	}
	in := &Initiator{id: id, rs: rs, cfg: c, sec: &pending{st: st, e: e}}
	runtime.AddCleanup(in, (*pending).free, in.sec)
	return in, encodePacket(kind, msg), nil
}

// Finish reads handshake message 2 and returns the session and the
// responder's payload. A forged or corrupted message 2 returns an error and
// leaves the Initiator ready for the genuine one.
func (in *Initiator) Finish(packet []byte) (*Session, []byte, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return nil, nil, fmt.Errorf("finish: %w", ErrState)
	}
	body, err := decodePacket(packet, kindResponse)
	if err != nil {
		return nil, nil, fmt.Errorf("finish: %w", err)
	}
	suite := in.rs.Suite()
	n := suite.PublicKeySize()
	if len(body) < n+16 {
		return nil, nil, fmt.Errorf("finish: %w: message 2 too short", ErrMalformed)
	}
	// -> e
	re, err := keystore.ParsePublicKey(suite, body[:n])
	if err != nil {
		return nil, nil, fmt.Errorf("finish: e: %w", err)
	}
	st, err := in.sec.st.clone()
	if err != nil {
		return nil, nil, err
	}
	defer st.free()
	dh, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	defer freeKey(dh)
	st.mixHash(body[:n])
	// ee
	if err := ephemeralDH(in.sec.e, re, dh); err != nil {
		return nil, nil, fmt.Errorf("finish: ee: %w", err)
	}
	st.mixKey(dh)
	// se
	if err := identityDH(in.id, re, dh); err != nil {
		return nil, nil, in.failed(fmt.Errorf("finish: se: %w", err))
	}
	st.mixKey(dh)
	payload, err := st.decryptAndHash(body[n:])
	if err != nil {
		return nil, nil, in.failed(fmt.Errorf("finish: payload: %w", err))
	}
	sess, err := newSession(st, true, suite, in.rs, in.cfg)
	if err != nil {
		return nil, nil, err
	}
	in.done = true
	in.sec.free()
	return sess, payload, nil
}

// failed counts a message 2 that cost an identity DH; past maxBadResponses
// the handshake is abandoned.
func (in *Initiator) failed(err error) error {
	if in.bad++; in.bad >= maxBadResponses {
		in.done = true
		in.sec.free()
		return fmt.Errorf("%w; %d bad responses, handshake abandoned: %w", err, in.bad, ErrState)
	}
	return err
}

// Close abandons the handshake and wipes its secrets.
func (in *Initiator) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.done = true
	in.sec.free()
}

// Responder answers handshakes for one identity. It remembers the ephemeral
// keys of recently accepted messages 1 so that a replay creates no second
// session and delivers no payload twice. It is safe for concurrent use.
type Responder struct {
	id  keystore.Identity
	cfg Config

	mu      sync.Mutex
	allowed []keystore.PublicKey // nil: anyone
	replay  replayCache
}

// replayCache remembers, per initiator static key, the ephemeral keys of its
// last replayDepth accepted messages 1, for the ReplayCache most recently
// seen initiators. Partitioned by peer so that one initiator can evict only
// its own entries; only a crowd of other initiators can push a peer out.
type replayCache struct {
	tags  map[[16]byte]bool
	peers map[string]*list.Element // of *peerTags, most recent in front
	lru   list.List
}

type peerTags struct {
	peer string
	tags [][16]byte
}

const replayDepth = 16

// NewResponder answers handshakes for id.
func NewResponder(id keystore.Identity, cfg *Config) *Responder {
	r := &Responder{id: id, cfg: cfg.orDefault()}
	r.replay.tags = make(map[[16]byte]bool)
	r.replay.peers = make(map[string]*list.Element)
	return r
}

// Allow restricts the initiators answered to these static keys (added to
// any allowed before). A Responder that was never given a key answers anyone.
func (r *Responder) Allow(keys ...keystore.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.allowed == nil {
		r.allowed = []keystore.PublicKey{}
	}
	r.allowed = append(r.allowed, keys...)
}

func (r *Responder) accepts(k keystore.PublicKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.allowed == nil {
		return true
	}
	ok := false
	for _, a := range r.allowed {
		ok = a.Equal(k) || ok
	}
	return ok
}

// Respond reads handshake message 1 and answers it with message 2 carrying
// reply. It returns the new session (whose Peer is the initiator's static
// key), the initiator's payload and the packet to send. A replayed message 1
// gives ErrReplay; a bad one leaves the Responder unchanged.
func (r *Responder) Respond(packet, reply []byte) (sess *Session, payload, msg2 []byte, err error) {
	kind, body, err := decodeAny(packet)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("respond: %w", err)
	}
	suite := keystore.X25519
	switch kind {
	case kindInitX25519:
	case kindInitP256:
		suite = keystore.P256
	default:
		return nil, nil, nil, fmt.Errorf("respond: %w: not a handshake init", ErrMalformed)
	}
	if suite.PublicKeySize()+16+len(reply) > maxMessage {
		return nil, nil, nil, fmt.Errorf("respond: %w: reply too long", ErrMalformed)
	}
	s, err := r.id.DHPublic(suite)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("respond: %w", err)
	}
	n := suite.PublicKeySize()
	if len(body) < 2*n+32 {
		return nil, nil, nil, fmt.Errorf("respond: %w: message 1 too short", ErrMalformed)
	}
	// Checked before any DH: a replay costs the token nothing.
	tag := replayTag(body[:n])
	if r.replayed(tag) {
		return nil, nil, nil, fmt.Errorf("respond: %w", ErrReplay)
	}
	st, err := initialize(suite, r.cfg.Prologue, s)
	if err != nil {
		return nil, nil, nil, err
	}
	defer st.free()
	var e, dh *[32]byte
	if err := newKeys(&e, &dh); err != nil {
		return nil, nil, nil, err
	}
	defer freeKey(e)
	defer freeKey(dh)
	fail := func(step string, err error) (*Session, []byte, []byte, error) {
		return nil, nil, nil, fmt.Errorf("respond: %s: %w", step, err)
	}
	// -> e
	re, err := keystore.ParsePublicKey(suite, body[:n])
	if err != nil {
		return fail("e", err)
	}
	st.mixHash(body[:n])
	// es
	if err := identityDH(r.id, re, dh); err != nil {
		return fail("es", err)
	}
	st.mixKey(dh)
	// s
	rsBytes, err := st.decryptAndHash(body[n : 2*n+16])
	if err != nil {
		return fail("s", err)
	}
	rs, err := keystore.ParsePublicKey(suite, rsBytes)
	if err != nil {
		return fail("s", err)
	}
	if !r.accepts(rs) {
		return fail("s", ErrUnknownPeer)
	}
	// ss
	if err := identityDH(r.id, rs, dh); err != nil {
		return fail("ss", err)
	}
	st.mixKey(dh)
	payload, err = st.decryptAndHash(body[2*n+16:])
	if err != nil {
		return fail("payload", err)
	}
	// <- e
	ep, err := newEphemeral(suite, r.cfg.Rand, e)
	if err != nil {
		return fail("e", err)
	}
	out := make([]byte, 0, n+16+len(reply))
	out = append(out, ep.Bytes()...)
	st.mixHash(ep.Bytes())
	// ee
	if err := ephemeralDH(e, re, dh); err != nil {
		return fail("ee", err)
	}
	st.mixKey(dh)
	// se
	if err := ephemeralDH(e, rs, dh); err != nil {
		return fail("se", err)
	}
	st.mixKey(dh)
	out = st.encryptAndHash(out, reply)
	sess, err = newSession(st, false, suite, rs, r.cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	// Remembered only once message 1 authenticated, so forgeries cannot
	// evict genuine entries; only a peer that passes Allow can.
	if !r.remember(tag, rs) {
		sess.Close()
		return nil, nil, nil, fmt.Errorf("respond: %w", ErrReplay)
	}
	return sess, payload, encodePacket(kindResponse, out), nil
}

// identityDH asks the keystore for a static-key DH and refuses an all-zero
// result itself, whatever the backend checks.
func identityDH(id keystore.Identity, peer keystore.PublicKey, out *[32]byte) error {
	if err := id.DH(peer, out); err != nil {
		return err
	}
	if isZero(out) {
		return fmt.Errorf("%w: DH output is zero", ErrInvalidPublicKey)
	}
	return nil
}

func replayTag(e []byte) (t [16]byte) {
	h := sha256.Sum256(e)
	copy(t[:], h[:])
	return t
}

func (r *Responder) replayed(t [16]byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replay.tags[t]
}

// remember records t for peer. It reports false if a concurrent Respond
// recorded t first.
func (r *Responder) remember(t [16]byte, peer keystore.PublicKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &r.replay
	if c.tags[t] {
		return false
	}
	key := string(peer.Bytes())
	e, ok := c.peers[key]
	if ok {
		c.lru.MoveToFront(e)
	} else {
		e = c.lru.PushFront(&peerTags{peer: key})
		c.peers[key] = e
	}
	p := e.Value.(*peerTags)
	p.tags = append(p.tags, t)
	c.tags[t] = true
	if len(p.tags) > replayDepth {
		delete(c.tags, p.tags[0])
		p.tags = p.tags[1:]
	}
	if c.lru.Len() > r.cfg.ReplayCache {
		old := c.lru.Remove(c.lru.Back()).(*peerTags)
		delete(c.peers, old.peer)
		for _, t := range old.tags {
			delete(c.tags, t)
		}
	}
	return true
}
