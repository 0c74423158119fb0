// Package messenger is the sans-I/O engine of a loramesh node: which contact
// a session belongs to, when a session may replace another, where replies go,
// retries, acknowledgements and fragmentation, so that no message is lost or
// misattributed silently (docs/PROTOCOL.md §6-§8).
//
// It never opens a socket or reads a clock. The host feeds it what arrives
// (Receive, with the link and address it came from), what the user does
// (Send, contacts) and the time, on every call; it collects the packets to
// transmit and the events for the user (Poll) and says when it next needs a
// call (Deadline). One Engine serves one identity. It is not safe for
// concurrent use: the host serialises calls.
package messenger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

// MsgID numbers the messages Send accepted, for their delivery events.
type MsgID uint64

// Packet is a packet to transmit.
type Packet struct {
	To   Addr
	Data []byte
}

// Engine is one node's messenger.
type Engine struct {
	id        keystore.Identity
	myID      [32]byte
	cfg       Config
	links     map[string]*link
	now       time.Time
	contacts  map[string]*contact
	responder *core.Responder
	demux     *core.Demux
	sessions  map[*core.Session]*session
	byHint    map[uint32]*handshake // pending handshakes by the hint of their message 2
	answered  map[[32]byte]*answer  // recent messages 1 answered, for their retransmissions; nil msg2: refused
	strangers map[string]time.Time  // stranger keys reported, when
	lastTS    uint64                // the last handshake timestamp used (monotonic)
	nextID    MsgID
	out       []Packet
	events    []Event
	history   []Record

	// durability (durable.go)
	dirty                     bool
	gen, encodedGen, savedGen uint64
	saveAt                    time.Time
	waiting                   map[*contact]bool
	held                      []heldEvent

	sched        schedule // contacts by next deadline
	touched      map[*contact]bool
	dhIndex      map[keystore.PublicKey]*contact
	byLast       map[Addr]*contact
	partialBytes int // bytes in reassembly, all contacts
	answeredNext time.Time
}

// link is a registered link, its airtime budget and its handshake rate.
type link struct {
	name     string
	p        Profile
	budget   time.Duration // airtime available now, under the duty cycle
	at       time.Time     // when budget was computed
	hsTokens float64       // handshakes that may be answered now
	hsAt     time.Time
}

// answer is a message 1 this node answered: a retransmission of it (its
// initiator missed message 2) gets the same message 2 again.
type answer struct {
	msg2 []byte
	at   time.Time
	sent time.Time
}

// New starts an engine for identity id, from the state a previous run saved
// (nil for a new node) at time now.
func New(id keystore.Identity, cfg Config, state []byte, now time.Time) (*Engine, error) {
	key, err := core.SigningKeyOf(id)
	if err != nil {
		return nil, fmt.Errorf("new engine: %w", err)
	}
	e := &Engine{
		id: id, myID: key.ID(), cfg: cfg.withDefaults(), links: map[string]*link{}, now: now,
		contacts: map[string]*contact{}, demux: core.NewDemux(), sessions: map[*core.Session]*session{},
		byHint: map[uint32]*handshake{}, answered: map[[32]byte]*answer{}, strangers: map[string]time.Time{},
		touched: map[*contact]bool{}, dhIndex: map[keystore.PublicKey]*contact{}, byLast: map[Addr]*contact{},
		waiting: map[*contact]bool{},
	}
	e.responder = core.NewResponder(id, e.coreConfig(e.myID))
	if err := e.load(state); err != nil {
		return nil, fmt.Errorf("new engine: %w", err)
	}
	e.updateAllowed()
	return e, nil
}

// AddLink registers a link the host can send and receive on.
func (e *Engine) AddLink(name string, p Profile) error {
	p, err := p.withDefaults()
	if err != nil {
		return fmt.Errorf("add link %s: %w", name, err)
	}
	if name == "" || len(name) > 32 {
		return fmt.Errorf("add link: name must be 1-32 bytes: %w", ErrConfig)
	}
	e.links[name] = &link{name: name, p: p, budget: p.budgetCap(), at: e.now, hsTokens: float64(p.HandshakeB), hsAt: e.now}
	return nil
}

func (e *Engine) coreConfig(responderID [32]byte) *core.Config {
	return &core.Config{
		Prologue: prologue(responderID), Rand: e.cfg.Rand,
		Clock:       func() time.Time { return e.now },
		MaxMessages: maxSeq * 4, // renewal comes long before (RenewCount)
	}
}

// Send queues text for contact and returns its id; delivery events follow.
func (e *Engine) Send(now time.Time, name string, text []byte) (MsgID, error) {
	e.advance(now)
	c, err := e.contact(name)
	if err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	if len(text) > e.cfg.MaxMessage {
		return 0, fmt.Errorf("send to %s: %d bytes, at most %d: %w", name, len(text), e.cfg.MaxMessage, ErrTooLarge)
	}
	if len(c.queue) >= e.cfg.MaxQueued {
		return 0, fmt.Errorf("send to %s: %d messages waiting: %w", name, len(c.queue), ErrQueueFull)
	}
	if len(c.dest(e.links)) == 0 {
		return 0, fmt.Errorf("send to %s: %w (set one, or wait until it contacts you)", name, ErrNoAddress)
	}
	e.nextID++
	m := &outMsg{mid: e.nextID, c: c, text: slices.Clone(text), created: now, deadline: now.Add(e.profile(c).Deadline)}
	c.queue = append(c.queue, m)
	e.changed(0)
	e.record(Record{Contact: name, Out: true, ID: m.mid, State: Queued, Text: slices.Clone(text), At: now})
	e.emitEvent(Event{Kind: EventDelivery, Contact: name, ID: m.mid, State: Queued})
	e.touch(c)
	e.pump()
	return m.mid, nil
}

// Receive handles a packet that arrived on link from addr.
func (e *Engine) Receive(now time.Time, from Addr, packet []byte) {
	e.advance(now)
	if _, ok := e.links[from.Link]; ok {
		switch kind, _ := core.PacketKind(packet); kind {
		case core.KindInitX25519, core.KindInitP256:
			e.onInit(from, packet)
		case core.KindResponse:
			e.onResponse(packet)
		case core.KindTransport:
			e.onTransport(from, packet)
		}
	}
	e.pump()
}

// Tick lets timers run: call it at Deadline (or any time).
func (e *Engine) Tick(now time.Time) {
	e.advance(now)
	e.pump()
}

// Poll returns the packets to transmit and the events that happened since
// the last Poll.
func (e *Engine) Poll() ([]Packet, []Event) {
	p, ev := e.out, e.events
	e.out, e.events = nil, nil
	return p, ev
}

// advance moves the engine's clock; it never goes backwards.
func (e *Engine) advance(now time.Time) {
	if now.After(e.now) {
		e.now = now
	}
}

func (e *Engine) emitEvent(ev Event) {
	if ev.At.IsZero() {
		ev.At = e.now
	}
	e.events = append(e.events, ev)
}

// nextTS is the next handshake timestamp: milliseconds since the Unix
// epoch, strictly above every one used before, even if the clock went back.
func (e *Engine) nextTS() uint64 {
	ts := max(uint64(max(e.now.UnixMilli(), 0)), e.lastTS+1)
	e.lastTS = ts
	e.background()
	return ts
}

// profile is the profile of the link c is reached on.
func (e *Engine) profile(c *contact) Profile {
	for _, a := range c.dest(e.links) {
		if l := e.links[a.Link]; l != nil {
			return l.p
		}
	}
	for _, n := range e.linkNames() {
		return e.links[n].p
	}
	return LoRa
}

func (e *Engine) linkNames() []string {
	var ns []string
	for n := range e.links {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// ---- handshakes -----------------------------------------------------------

// onInit answers a message 1 (docs/PROTOCOL.md §6): only from contacts, only
// with a timestamp above the last one accepted from that contact (a replay,
// even after a restart, is refused), only when the identity it claims is the
// contact's. The session it creates is a candidate: it replaces the working
// session only once the initiator confirms it with a transport packet. The
// answer goes back where the message came from; the contact's address is
// not changed by it.
func (e *Engine) onInit(from Addr, packet []byte) {
	h := sha256.Sum256(packet)
	if a := e.answered[h]; a != nil { // a retransmission: our message 2 was lost
		if a.msg2 != nil && e.now.Sub(a.sent) >= time.Second {
			a.sent = e.now
			e.emit(from, a.msg2)
		}
		return
	}
	if !e.links[from.Link].takeHandshake(e.now) {
		e.drop(from, "", "handshake rate limit reached")
		return
	}
	ts := e.nextTS()
	s, payload, msg2, err := e.responder.Respond(packet, encodeResp(ts))
	var stranger *core.UnknownPeerError
	switch {
	case errors.As(err, &stranger):
		e.onStranger(from, stranger.Key)
		e.remember(h, nil) // its retransmissions cost nothing more
		return
	case err != nil:
		e.drop(from, "", "handshake refused: "+err.Error())
		return
	}
	c := e.dhIndex[s.Peer()]
	if c == nil { // the allow list holds contacts' keys only
		s.Close()
		return
	}
	e.touch(c)
	ts1, claim, err := decodeInit(payload)
	switch {
	case err != nil:
		s.Close()
		e.drop(from, c.name, err.Error())
		return
	case !bytes.Equal(claim, c.id[:core.FingerprintSize]):
		s.Close()
		e.drop(from, c.name, "handshake claims another identity than the contact holding its key")
		return
	case ts1 <= c.hw:
		s.Close()
		e.drop(from, c.name, "replayed or stale handshake")
		return
	}
	c.hw = ts1
	e.background()
	if c.pending != nil {
		// Both ends initiated: the end with the lower identity keeps its
		// own handshake, on both sides, so both end with one session.
		if bytes.Compare(e.myID[:], c.id[:]) < 0 {
			s.Close()
			return
		}
		e.abandon(c.pending)
	}
	if c.candidate != nil {
		e.closeSession(c.candidate)
	}
	c.candidate = e.newSession(c, s, false, ts, ts1)
	e.remember(h, msg2)
	e.emit(from, msg2)
}

// remember keeps a message 1's fate (its answer, or nil: refused) for its
// retransmissions, within a bound.
func (e *Engine) remember(h [32]byte, msg2 []byte) {
	if exp := e.now.Add(answerKeep); e.answeredNext.IsZero() || exp.Before(e.answeredNext) {
		e.answeredNext = exp
	}
	if len(e.answered) >= maxAnswered {
		var oldest [32]byte
		first := true
		for k, a := range e.answered {
			if first || a.at.Before(e.answered[oldest].at) {
				oldest, first = k, false
			}
		}
		delete(e.answered, oldest)
	}
	e.answered[h] = &answer{msg2: msg2, at: e.now, sent: e.now}
}

// maxAnswered bounds the messages 1 remembered.
const maxAnswered = 256

// onStranger reports an unknown initiator once in a while: the key its
// handshake authenticated (one identity DH spent, no answer given).
func (e *Engine) onStranger(from Addr, k keystore.PublicKey) {
	key := string(k.Bytes())
	if t, seen := e.strangers[key]; seen && e.now.Sub(t) < strangerQuiet {
		return
	}
	if len(e.strangers) >= e.cfg.MaxStrangers {
		for k, t := range e.strangers {
			if e.now.Sub(t) >= strangerQuiet || len(e.strangers) >= e.cfg.MaxStrangers {
				delete(e.strangers, k)
			}
		}
	}
	e.strangers[key] = e.now
	e.emitEvent(Event{Kind: EventStranger, From: from, Key: k, Fingerprint: KeyFingerprint(k)})
}

// strangerQuiet is how long a stranger is not reported again.
const strangerQuiet = 10 * time.Minute

// KeyFingerprint shows a DH key the way card fingerprints are shown, for a
// stranger whose card the user does not have yet.
func KeyFingerprint(k keystore.PublicKey) string {
	h := sha256.Sum256(append([]byte{'l', 'm', 'd', 'h', byte(k.Suite())}, k.Bytes()...))
	return core.FormatFingerprint(h)
}

// handshake is a message 1 this node sent, waiting for message 2.
type handshake struct {
	c        *contact
	in       *core.Initiator
	msg1     []byte
	ts       uint64
	to       []Addr
	attempts int
	next     time.Time
	rto      time.Duration
}

// startHandshake sends a fresh message 1 to c.
func (e *Engine) startHandshake(c *contact) {
	p := e.profile(c)
	to := c.dest(e.links)
	suite, err := e.suiteFor(c)
	if err == nil && len(to) == 0 {
		err = ErrNoAddress
	}
	var in *core.Initiator
	var msg1 []byte
	ts := e.nextTS()
	if err == nil {
		k, _ := c.card.DHKey(suite)
		in, msg1, err = core.Initiate(e.id, k, encodeInit(ts, e.myID), e.coreConfig(c.id))
	}
	if err != nil {
		c.backoff(e.now, p)
		e.drop(Addr{}, c.name, "cannot start a handshake: "+err.Error())
		return
	}
	h := &handshake{c: c, in: in, msg1: msg1, ts: ts, to: to, next: e.now, rto: p.RTO}
	c.pending = h
	e.byHint[in.ResponseHint()] = h
}

func (e *Engine) suiteFor(c *contact) (keystore.Suite, error) {
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if _, ok := c.card.DHKey(s); ok && slices.Contains(e.id.Suites(), s) {
			return s, nil
		}
	}
	return 0, core.ErrUnsupportedSuite
}

// sendHandshake (re)transmits a pending message 1, the same bytes each time
// (a responder that answered it answers again with the same message 2);
// after MaxAttempts it gives up, and a fresh handshake comes later.
func (e *Engine) sendHandshake(h *handshake) {
	p := e.profile(h.c)
	if h.attempts >= p.MaxAttempts {
		e.abandon(h)
		h.c.backoff(e.now, p)
		return
	}
	for _, a := range h.to {
		if !e.emit(a, h.msg1) {
			h.next = e.links[a.Link].readyAt(len(h.msg1), e.now)
			return
		}
	}
	h.attempts++
	h.next = e.now.Add(h.rto)
	h.rto = min(2*h.rto, p.MaxRTO)
}

// backoff delays c's next handshake, longer after each failure.
func (c *contact) backoff(now time.Time, p Profile) {
	c.hsDelay = min(max(2*c.hsDelay, p.RTO), p.MaxRTO)
	c.nextHS = now.Add(c.hsDelay)
}

func (e *Engine) abandon(h *handshake) {
	h.in.Close()
	delete(e.byHint, h.in.ResponseHint())
	if h.c.pending == h {
		h.c.pending = nil
	}
}

// onResponse completes a pending handshake. The session is confirmed at
// once (message 2 authenticated the responder) and becomes the one to send
// on; the one it replaces still receives for a grace period.
func (e *Engine) onResponse(packet []byte) {
	hint, _ := core.Hint(packet)
	h := e.byHint[hint]
	if h == nil {
		return
	}
	c := h.c
	e.touch(c)
	s, payload, err := h.in.Finish(packet)
	if errors.Is(err, core.ErrState) {
		// Forged responses spent the core's bound on identity operations:
		// start afresh instead of waiting out a timeout.
		e.abandon(h)
		e.startHandshake(c)
		return
	}
	if err != nil {
		e.drop(Addr{}, c.name, "handshake response refused: "+err.Error())
		return
	}
	e.abandon(h)
	ts2, err := decodeResp(payload)
	if err == nil && ts2 <= c.hw2 {
		// Its epoch names the messages it sends in this session: one
		// seen before would make new messages look like old ones.
		err = fmt.Errorf("message 2 timestamp not above the last one (%w)", ErrProtocol)
	}
	if err != nil {
		s.Close()
		e.drop(Addr{}, c.name, err.Error())
		return
	}
	c.hw2 = ts2
	e.background()
	c.hsDelay = 0
	ss := e.newSession(c, s, true, h.ts, ts2)
	ss.needConfirm = true
	e.promote(c, ss)
}

// promote makes s the session c's messages go out on.
func (e *Engine) promote(c *contact, s *session) {
	if c.candidate == s {
		c.candidate = nil
	}
	if c.current != nil {
		c.current.retire = e.now.Add(e.profile(c).Grace)
		c.old = append(c.old, c.current)
	}
	s.confirmed = true
	c.current = s
	// The peer answers now: what it has not acknowledged goes again at
	// once, under the new session, instead of waiting out its backoff. A
	// new session may mean the peer restarted and lost the fragments it
	// acknowledged one by one (they are not saved): those go again too.
	p := e.profile(c)
	for _, m := range c.queue {
		for i, pk := range m.pk {
			if pk != nil {
				m.acked[i] = false
				pk.next, pk.rto = e.now, p.RTO
			}
		}
	}
	e.emitEvent(Event{Kind: EventSession, Contact: c.name, Verified: c.verified, Reason: s.s.Suite().String()})
}

// ---- sessions -------------------------------------------------------------

// session is a core session and what the engine knows about it.
type session struct {
	c           *contact
	s           *core.Session
	initiator   bool
	confirmed   bool
	started     time.Time
	myEpoch     uint64 // our handshake timestamp: names the messages we send in it
	peerEpoch   uint64
	seq         int       // the next message number we assign in it
	lastRecv    time.Time // last authenticated packet from the peer in it
	retire      time.Time // replaced: closed at this time
	needConfirm bool      // initiator: nothing sent in it yet
	recvHints   []hintAck // recent data packets received, to acknowledge duplicates
}

type hintAck struct {
	hint uint32
	id   msgID
}

func (e *Engine) newSession(c *contact, s *core.Session, initiator bool, mine, peer uint64) *session {
	ss := &session{c: c, s: s, initiator: initiator, started: e.now, myEpoch: mine, peerEpoch: peer}
	e.sessions[s] = ss
	e.demux.Add(s)
	return ss
}

func (e *Engine) closeSession(s *session) {
	delete(e.sessions, s.s)
	s.s.Close()
}

// onTransport opens a transport packet with the session its hint names,
// confirms a candidate, learns the contact's address (from the newest
// authenticated packets only, as WireGuard roams) and handles its frames.
func (e *Engine) onTransport(from Addr, packet []byte) {
	o, err := e.demux.Open(packet)
	s := e.sessions[o.Session]
	switch {
	case errors.Is(err, core.ErrReplay) && s != nil:
		e.onDuplicate(s, packet) // the peer missed our acknowledgement
		return
	case err != nil || s == nil:
		e.onUnknown(from)
		return
	}
	c := s.c
	e.touch(c)
	s.lastRecv = e.now
	if !s.confirmed {
		e.promote(c, s)
	}
	if o.Newest && from != c.last && s == c.current {
		e.setLast(c, from)
		e.background()
		e.emitEvent(Event{Kind: EventAddress, Contact: c.name, From: from})
	}
	f, err := decodeFrames(o.Plaintext)
	if err != nil {
		e.drop(from, c.name, err.Error())
		return
	}
	for _, a := range f.acks {
		e.onAck(c, s, a)
	}
	if f.data != nil {
		hint, _ := core.Hint(packet)
		e.onData(c, s, f.data, hint)
	}
}

// onUnknown: a transport packet no session opens. If it came from where a
// contact was last heard (not a shared radio channel), that contact may hold
// a session this node lost (a restart): a fresh handshake mends it.
func (e *Engine) onUnknown(from Addr) {
	c := e.byLast[from]
	if from.Addr == "" || c == nil {
		return
	}
	if c.pending == nil && !e.now.Before(c.nextHS) {
		e.touch(c)
		e.startHandshake(c)
		c.backoff(e.now, e.profile(c)) // at most one such handshake per backoff
	}
}

// ---- transmission ---------------------------------------------------------

// emit queues a packet for the host, if the link's duty cycle allows it now.
func (e *Engine) emit(to Addr, pkt []byte) bool {
	l := e.links[to.Link]
	if l == nil {
		return false
	}
	if !l.spend(len(pkt), e.now) {
		return false
	}
	e.out = append(e.out, Packet{To: to, Data: slices.Clone(pkt)})
	return true
}

// airtime estimates a frame's time on air: its bits at the link's bitrate
// plus a fixed preamble and header (LoRa's is about 50 ms at SF9).
func (p Profile) airtime(n int) time.Duration {
	if p.Bitrate <= 0 || p.DutyCycle <= 0 {
		return 0
	}
	return 50*time.Millisecond + time.Duration(n)*8*time.Second/time.Duration(p.Bitrate)
}

// budgetCap is the airtime that may be spent in a burst: an hour's share.
func (p Profile) budgetCap() time.Duration {
	return time.Duration(float64(time.Hour) * p.DutyCycle)
}

func (l *link) refill(now time.Time) {
	if now.After(l.at) {
		l.budget = min(l.budget+time.Duration(float64(now.Sub(l.at))*l.p.DutyCycle), l.p.budgetCap())
		l.at = now
	}
}

func (l *link) spend(n int, now time.Time) bool {
	t := l.p.airtime(n)
	if t == 0 {
		return true
	}
	l.refill(now)
	if l.budget < t {
		return false
	}
	l.budget -= t
	return true
}

// readyAt is when the link will have the airtime for n bytes.
func (l *link) readyAt(n int, now time.Time) time.Time {
	l.refill(now)
	short := l.p.airtime(n) - l.budget
	if short <= 0 {
		return now
	}
	return now.Add(time.Duration(float64(short)/l.p.DutyCycle) + time.Millisecond)
}

// takeHandshake spends one token of the link's handshake rate limit: each
// message 1 costs an identity DH (a token or TPM operation), so a flood
// costs a bounded amount of work.
func (l *link) takeHandshake(now time.Time) bool {
	if now.After(l.hsAt) {
		l.hsTokens = min(l.hsTokens+now.Sub(l.hsAt).Seconds()*l.p.Handshakes, float64(l.p.HandshakeB))
		l.hsAt = now
	}
	if l.hsTokens < 1 {
		return false
	}
	l.hsTokens--
	return true
}

// drop reports a refused packet or a failure that loses nothing.
func (e *Engine) drop(from Addr, contact, why string) {
	e.emitEvent(Event{Kind: EventDropped, From: from, Contact: contact, Reason: why})
}

// Deadline is when the engine next needs Tick (the zero time: never).
func (e *Engine) Deadline() time.Time {
	if len(e.touched) > 0 { // restored from the state, not serviced yet
		return e.now
	}
	d := e.answeredNext
	if len(e.sched) > 0 && (d.IsZero() || e.sched[0].due.Before(d)) {
		d = e.sched[0].due
	}
	if s := e.saveDeadline(); !s.IsZero() && (d.IsZero() || s.Before(d)) {
		d = s
	}
	return d
}

// answerKeep: how long a message 2 is kept for retransmissions of its
// message 1.
const answerKeep = 10 * time.Minute

// Close wipes every session. The engine is unusable afterwards.
func (e *Engine) Close() {
	for _, c := range e.contacts {
		for _, s := range c.sessions() {
			e.closeSession(s)
		}
		if c.pending != nil {
			e.abandon(c.pending)
		}
	}
}

// describe helps tests and diagnostics.
func (e *Engine) describe() string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(e.contacts)) {
		c := e.contacts[n]
		fmt.Fprintf(&b, "%s: current %v candidate %v old %d pending %v queue %d\n",
			n, c.current != nil, c.candidate != nil, len(c.old), c.pending != nil, len(c.queue))
	}
	return b.String()
}
