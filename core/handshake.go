package core

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/replay"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// Noise_IK (Noise revision 34, section 7.5; docs/PROTOCOL.md §3):
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
	Prologue []byte           // mixed into h on both sides; must match
	Rand     io.Reader        // ephemeral keys; crypto/rand when nil
	Clock    func() time.Time // ages skipped keys; time.Now when nil

	Window        int           // how far behind late messages are still accepted (default 64, max 4096)
	Lookahead     int           // how far ahead of the next expected message a packet is recognised (default 32, max 1024)
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
	if v.Clock == nil {
		v.Clock = time.Now
	}
	if v.Window <= 0 {
		v.Window = 64
	}
	v.Window = min(v.Window, 4096)
	if v.Lookahead <= 0 {
		v.Lookahead = 32
	}
	v.Lookahead = min(v.Lookahead, maxLookahead)
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

// message1 is a parsed message 1: e || enc(s) || enc(payload).
type message1 struct {
	suite      keystore.Suite
	e, s, rest []byte
}

func parseMessage1(packet []byte) (message1, error) {
	kind, err := PacketKind(packet)
	if err != nil {
		return message1{}, err
	}
	suite, ok := kind.InitSuite()
	if !ok {
		return message1{}, fmt.Errorf("not a handshake init: %w", ErrMalformed)
	}
	b, err := body(packet, kind)
	if err != nil {
		return message1{}, err
	}
	n := suite.PublicKeySize()
	if len(b) < 2*n+2*tagSize {
		return message1{}, fmt.Errorf("message 1 too short: %w", ErrMalformed)
	}
	return message1{suite, b[:n], b[n : 2*n+tagSize], b[2*n+tagSize:]}, nil
}

// message2 is a parsed message 2: hint || e || enc(payload).
type message2 struct {
	hint    uint32
	e, rest []byte
}

func parseMessage2(packet []byte, suite keystore.Suite) (message2, error) {
	b, err := body(packet, KindResponse)
	if err != nil {
		return message2{}, err
	}
	n := suite.PublicKeySize()
	if len(b) < HintSize+n+tagSize {
		return message2{}, fmt.Errorf("message 2 too short: %w", ErrMalformed)
	}
	h, _ := Hint(packet)
	return message2{h, b[HintSize : HintSize+n], b[HintSize+n:]}, nil
}

// responseHint is the hint a responder puts on message 2 and the initiator
// looks for (docs/PROTOCOL.md §3): derived from ck after message 1, which
// only the two ends know, so an observer cannot link message 2 to its
// message 1, and a forged message 2 without it costs no DH.
func responseHint(st *symmetric) uint32 {
	var h [32]byte
	secret.Do(func() { prim.HMAC(&h, st.ck.p[:], []byte("loramesh response hint")) })
	return binary.BigEndian.Uint32(h[:])
}

// Initiator is a handshake waiting for message 2. It is single use: Finish
// succeeds once, then the Initiator is spent.
type Initiator struct {
	mu   sync.Mutex
	id   keystore.Identity
	rs   keystore.PublicKey
	cfg  Config
	sec  *pending
	hint uint32
	done bool
	bad  int // messages 2 that failed after a DH with the identity
}

// pending is an Initiator's secret state, apart from it so that a cleanup
// can wipe it when an Initiator is dropped unfinished (a lost message 2).
type pending struct {
	st *symmetric
	e  ephemeralKey
}

func (p *pending) free() {
	p.st.free()
	p.e.free()
	p.st, p.e = nil, ephemeralKey{}
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
	kind, err := InitKind(suite)
	if err != nil {
		return nil, nil, fmt.Errorf("initiate: %w", err)
	}
	s, err := id.DHPublic(suite)
	if err != nil {
		return nil, nil, fmt.Errorf("initiate: %w", err)
	}
	if len(payload) > MaxInitPayload(suite) {
		return nil, nil, fmt.Errorf("initiate: payload too long: %w", ErrMalformed)
	}
	st, err := initialize(suite, c.Prologue, rs)
	if err != nil {
		return nil, nil, fmt.Errorf("initiate: %w", err)
	}
	// -> e
	e, ep, err := newEphemeral(suite, c.Rand)
	if err != nil {
		st.free()
		return nil, nil, fmt.Errorf("initiate: e: %w", err)
	}
	fail := func(step string, err error) (*Initiator, []byte, error) {
		st.free()
		e.free()
		return nil, nil, fmt.Errorf("initiate: %s: %w", step, err)
	}
	msg := make([]byte, 0, InitSize(suite, len(payload)))
	msg = append(append(msg, byte(kind)), ep.Bytes()...)
	st.mixHash(ep.Bytes())
	// es
	if err := st.mixDH(e, rs); err != nil {
		return fail("es", err)
	}
	// s
	msg = st.encryptAndHash(msg, s.Bytes())
	// ss
	if err := st.mixIdentityDH(id, rs); err != nil {
		return fail("ss", err)
	}
	msg = st.encryptAndHash(msg, payload)
	in := &Initiator{id: id, rs: rs, cfg: c, sec: &pending{st: st, e: e}, hint: responseHint(st)}
	runtime.AddCleanup(in, (*pending).free, in.sec)
	return in, msg, nil
}

// ResponseHint is the hint the genuine message 2 carries (see Hint), for a
// caller that waits on several handshakes.
func (in *Initiator) ResponseHint() uint32 { return in.hint }

// Finish reads handshake message 2 and returns the session and the
// responder's payload. A forged or corrupted message 2 returns an error and
// leaves the Initiator ready for the genuine one.
func (in *Initiator) Finish(packet []byte) (*Session, []byte, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return nil, nil, fmt.Errorf("finish: %w", ErrState)
	}
	suite := in.rs.Suite()
	m, err := parseMessage2(packet, suite)
	if err != nil {
		return nil, nil, fmt.Errorf("finish: %w", err)
	}
	if m.hint != in.hint { // not for this handshake, or forged: no DH spent
		return nil, nil, fmt.Errorf("finish: response hint does not match: %w", ErrAuth)
	}
	// <- e
	re, err := keystore.ParsePublicKey(suite, m.e)
	if err != nil {
		return nil, nil, fmt.Errorf("finish: e: %w", err)
	}
	// On a copy: a forged message 2 must leave the state as it was.
	st, err := in.sec.st.clone()
	if err != nil {
		return nil, nil, fmt.Errorf("finish: %w", err)
	}
	defer st.free()
	st.mixHash(m.e)
	// ee
	if err := st.mixDH(in.sec.e, re); err != nil {
		return nil, nil, fmt.Errorf("finish: ee: %w", err)
	}
	// se
	if err := st.mixIdentityDH(in.id, re); err != nil {
		return nil, nil, in.failed(fmt.Errorf("finish: se: %w", err))
	}
	payload, err := st.decryptAndHash(m.rest)
	if err != nil {
		return nil, nil, in.failed(fmt.Errorf("finish: payload: %w", err))
	}
	sess, err := newSession(st, true, suite, in.rs, in.cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("finish: %w", err)
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
	allowed map[keystore.PublicKey]bool // nil: anyone
	replay  *replay.Cache
}

// UnknownPeerError is a handshake from a static key the allow list lacks;
// it matches ErrUnknownPeer. Key was authenticated by one identity DH (es),
// so a caller can show it to the user.
type UnknownPeerError struct{ Key keystore.PublicKey }

func (e *UnknownPeerError) Error() string { return ErrUnknownPeer.Error() }
func (e *UnknownPeerError) Unwrap() error { return ErrUnknownPeer }

// NewResponder answers handshakes for id.
func NewResponder(id keystore.Identity, cfg *Config) *Responder {
	c := cfg.orDefault()
	return &Responder{id: id, cfg: c, replay: replay.New(c.ReplayCache)}
}

// Allow restricts the initiators answered to these static keys (added to
// any allowed before). A Responder that was never given a key answers anyone.
func (r *Responder) Allow(keys ...keystore.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.allowed == nil {
		r.allowed = map[keystore.PublicKey]bool{}
	}
	for _, k := range keys {
		r.allowed[k] = true
	}
}

// SetAllowed replaces the allow list: from now on only these keys are
// answered, none if there are none.
func (r *Responder) SetAllowed(keys ...keystore.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.allowed = map[keystore.PublicKey]bool{}
	for _, k := range keys {
		r.allowed[k] = true
	}
}

func (r *Responder) accepts(k keystore.PublicKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.allowed == nil || r.allowed[k]
}

func (r *Responder) replayed(t replay.Tag) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replay.Seen(t)
}

// Respond reads handshake message 1 and answers it with message 2 carrying
// reply. It returns the new session (whose Peer is the initiator's static
// key), the initiator's payload and the packet to send. A replayed message 1
// gives ErrReplay; a bad one leaves the Responder unchanged.
func (r *Responder) Respond(packet, reply []byte) (sess *Session, payload, msg2 []byte, err error) {
	fail := func(step string, err error) (*Session, []byte, []byte, error) {
		return nil, nil, nil, fmt.Errorf("respond: %s%w", step, err)
	}
	m, err := parseMessage1(packet)
	if err != nil {
		return fail("", err)
	}
	if len(reply) > MaxReplyPayload(m.suite) {
		return fail("", fmt.Errorf("reply too long: %w", ErrMalformed))
	}
	s, err := r.id.DHPublic(m.suite)
	if err != nil {
		return fail("", err)
	}
	// Checked before any DH: a replay costs the token nothing.
	tag := replay.TagOf(m.e)
	if r.replayed(tag) {
		return fail("", ErrReplay)
	}
	st, err := initialize(m.suite, r.cfg.Prologue, s)
	if err != nil {
		return fail("", err)
	}
	defer st.free()
	// -> e
	re, err := keystore.ParsePublicKey(m.suite, m.e)
	if err != nil {
		return fail("e: ", err)
	}
	st.mixHash(m.e)
	// es
	if err := st.mixIdentityDH(r.id, re); err != nil {
		return fail("es: ", err)
	}
	// s
	rsBytes, err := st.decryptAndHash(m.s)
	if err != nil {
		return fail("s: ", err)
	}
	rs, err := keystore.ParsePublicKey(m.suite, rsBytes)
	if err != nil {
		return fail("s: ", err)
	}
	if !r.accepts(rs) {
		return fail("s: ", &UnknownPeerError{rs})
	}
	// ss
	if err := st.mixIdentityDH(r.id, rs); err != nil {
		return fail("ss: ", err)
	}
	payload, err = st.decryptAndHash(m.rest)
	if err != nil {
		return fail("payload: ", err)
	}
	// <- e
	e, ep, err := newEphemeral(m.suite, r.cfg.Rand)
	if err != nil {
		return fail("e: ", err)
	}
	defer e.free()
	out := make([]byte, 0, ResponseSize(m.suite, len(reply)))
	out = binary.BigEndian.AppendUint32(append(out, byte(KindResponse)), responseHint(st))
	out = append(out, ep.Bytes()...)
	st.mixHash(ep.Bytes())
	// ee
	if err := st.mixDH(e, re); err != nil {
		return fail("ee: ", err)
	}
	// se
	if err := st.mixDH(e, rs); err != nil {
		return fail("se: ", err)
	}
	out = st.encryptAndHash(out, reply)
	sess, err = newSession(st, false, m.suite, rs, r.cfg)
	if err != nil {
		return fail("", err)
	}
	// Remembered only once message 1 authenticated, so forgeries cannot
	// evict genuine entries; only a peer that passes Allow can.
	r.mu.Lock()
	added := r.replay.Add(tag, rs)
	r.mu.Unlock()
	if !added { // a concurrent Respond took this message 1 first
		sess.Close()
		return fail("", ErrReplay)
	}
	return sess, payload, out, nil
}
