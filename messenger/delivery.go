package messenger

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/loramesh/loramesh-core/core"
)

// Reliable delivery (docs/PROTOCOL.md §7): every message has an id, the
// receiver acknowledges it inside the encryption (on other traffic when it
// can), the sender retransmits with backoff until acknowledged or the
// deadline, and the receiver delivers each message once.

// outMsg is a message Send accepted, until delivered or failed.
type outMsg struct {
	mid      MsgID
	c        *contact
	text     []byte
	created  time.Time
	deadline time.Time
	assigned bool
	id       msgID
	gen      uint64 // the change that numbered it: its first transmission waits until it is saved
	frags    [][]byte
	pk       []*outPacket // per fragment: its packet once sent
	acked    []bool
	sent     bool // Sent reported
}

// outPacket is a fragment's packet: retransmitted as the same bytes while
// its session is the one in use, encrypted anew under the next one.
type outPacket struct {
	data  []byte
	sess  *session
	first time.Time
	next  time.Time
	rto   time.Duration
	tries int
}

// partialMsg is a fragmented message being reassembled.
type partialMsg struct {
	parts   [][]byte
	have    []bool
	n       int
	bytes   int
	time    int64
	started time.Time
}

// ackDue is an acknowledgement to send by due, once the change of
// generation gen (the delivery it acknowledges) is saved.
type ackDue struct {
	due     time.Time
	partial []byte // nil: the whole message
	gen     uint64
}

// delivered is a message delivered to the host, remembered to refuse it
// again: when, and the change that recorded it.
type delivered struct {
	at  time.Time
	gen uint64
}

// Bounds on what a contact can make the engine hold.
const (
	maxPartial    = 4    // messages being reassembled per contact
	maxRemembered = 4096 // delivered message ids remembered per contact
	maxRecvHints  = 64   // data packets remembered per session, to acknowledge duplicates
	maxPartialAll = 1 << 20
)

func (e *Engine) service(c *contact) {
	now, p := e.now, e.profile(c)
	c.old = slices.DeleteFunc(c.old, func(s *session) bool {
		if now.Before(s.retire) {
			return false
		}
		e.closeSession(s)
		return true
	})
	if c.candidate != nil && now.Sub(c.candidate.started) >= p.Grace {
		e.closeSession(c.candidate)
		c.candidate = nil
	}
	e.expire(c, p)
	for _, m := range slices.Clone(c.queue) {
		if !now.Before(m.deadline) {
			why := fmt.Sprintf("not delivered within %v", p.Deadline)
			if !m.sent && c.current == nil {
				why = fmt.Sprintf("no session with %s within %v (no answer to handshakes)", c.name, p.Deadline)
			}
			e.fail(m, why)
		}
	}
	s := c.current
	want := len(c.queue) > 0 || len(c.acks) > 0
	waitCandidate := c.candidate != nil && now.Sub(c.candidate.started) < p.RTO
	switch {
	case c.pending != nil:
	case now.Before(c.nextHS):
	case s != nil && want && (now.Sub(s.started) >= p.RenewAfter || s.seq >= p.RenewCount):
		e.startHandshake(c) // renewal, when there is traffic: the session in use goes on meanwhile
	case s != nil && c.unanswered():
		e.startHandshake(c) // the peer may have lost the session
	case s == nil && want && !waitCandidate:
		e.startHandshake(c)
	}
	if h := c.pending; h != nil && !now.Before(h.next) {
		e.sendHandshake(h)
	}
	if s != nil {
		e.sendData(c, s, p)
	}
}

// unanswered: a fragment went out three times with nothing heard back in
// this session since it first went out.
func (c *contact) unanswered() bool {
	for _, m := range c.queue {
		for i, pk := range m.pk {
			if pk != nil && !m.acked[i] && pk.tries >= 3 && pk.sess == c.current && c.current.lastRecv.Before(pk.first) {
				return true
			}
		}
	}
	return false
}

// expire forgets old delivered ids and stalled reassemblies.
func (e *Engine) expire(c *contact, p Profile) {
	for id, d := range c.delivered {
		if e.now.Sub(d.at) > 2*p.Deadline {
			delete(c.delivered, id)
		}
	}
	for id, pm := range c.partial {
		if e.now.Sub(pm.started) >= p.Reassembly {
			delete(c.partial, id)
			delete(c.acks, id)
			e.partialBytes -= pm.bytes
		}
	}
}

// sendData sends what is due on s: retransmissions, new fragments within the
// in-flight limit, acknowledgements (on data packets when they fit) and the
// initiator's confirmation.
func (e *Engine) sendData(c *contact, s *session, p Profile) {
	now := e.now
	c.blocked = time.Time{}
	dest := c.dest(e.links)
	if len(dest) == 0 {
		return
	}
	to := dest[0]
	inflight := 0
	for _, m := range c.queue {
		for i, pk := range m.pk {
			if pk != nil && !m.acked[i] {
				inflight++
			}
		}
	}
	acks := e.acksFor(c, s)
	send := func(f frames) ([]byte, bool) {
		b, err := s.s.Encrypt(f.encode())
		if err != nil { // the session's message limit: renewal is due
			e.drop(Addr{}, c.name, "session exhausted: "+err.Error())
			return nil, false
		}
		return b, e.emit(to, b)
	}
	room := func(f *frames) {
		for len(acks) > 0 && len(f.encode())+acks[0].size()+core.EncryptedSize(0) <= p.FrameSize {
			f.acks, acks = append(f.acks, acks[0]), acks[1:]
		}
		if s.needConfirm {
			f.confirm, s.needConfirm = true, false
		}
	}
	for _, m := range c.queue {
		for i, pk := range m.pk {
			if pk == nil || m.acked[i] || now.Before(pk.next) {
				continue
			}
			if pk.sess != s { // encrypted anew, under its original id
				f := frames{data: m.frame(i, s)}
				room(&f)
				b, ok := send(f)
				if b == nil {
					return
				}
				pk.data, pk.sess = b, s
				if !ok {
					pk.next = e.links[to.Link].readyAt(len(b), now)
					return
				}
			} else if !e.emit(to, pk.data) {
				pk.next = e.links[to.Link].readyAt(len(pk.data), now)
				c.blocked = pk.next
				return
			}
			pk.tries++
			pk.rto = min(2*pk.rto, p.MaxRTO)
			pk.next = now.Add(pk.rto)
		}
	}
	for _, m := range c.queue {
		if !m.assigned {
			if s.seq > maxSeq {
				break // renewal is due
			}
			if !e.assign(m, s, p) {
				continue
			}
		}
		if !e.durable(m.gen) { // its number is not saved yet
			e.wait(c)
			continue
		}
		for i := range m.frags {
			if m.pk[i] != nil {
				continue
			}
			if inflight >= p.InFlight {
				break
			}
			f := frames{data: m.frame(i, s)}
			room(&f)
			b, ok := send(f)
			if b == nil {
				return
			}
			if !ok { // the packet is dropped unsent and built again when there is airtime
				c.blocked = e.links[to.Link].readyAt(len(b), now)
				for _, a := range f.acks {
					e.ack(c, e.ackID(s, a), a.partial, 0, 0)
				}
				s.needConfirm = s.needConfirm || f.confirm
				return
			}
			m.pk[i] = &outPacket{data: b, sess: s, first: now, next: now.Add(p.RTO), rto: p.RTO, tries: 1}
			inflight++
		}
		if !m.sent && !slices.Contains(m.pk, nil) {
			m.sent = true
			e.background()
			e.recordState(m.mid, Sent, "")
			e.emitEvent(Event{Kind: EventDelivery, Contact: c.name, ID: m.mid, State: Sent})
		}
	}
	for len(acks) > 0 || s.needConfirm {
		var f frames
		room(&f)
		if b, ok := send(f); !ok {
			if b != nil { // no airtime: these go again when there is
				c.blocked = e.links[to.Link].readyAt(len(b), now)
				for _, a := range f.acks {
					e.ack(c, e.ackID(s, a), a.partial, 0, 0)
				}
				s.needConfirm = s.needConfirm || f.confirm
			}
			return
		}
	}
}

// ackID is the message an ack frame sent in s names.
func (e *Engine) ackID(s *session, a ackFrame) msgID {
	if a.orig != 0 {
		return msgID{a.orig, a.seq}
	}
	return msgID{s.peerEpoch, a.seq}
}

// acksFor takes c's acknowledgements that are due, as frames for s; while
// any is due, the others go along.
func (e *Engine) acksFor(c *contact, s *session) []ackFrame {
	due := false
	for _, a := range c.acks {
		if !e.durable(a.gen) {
			e.wait(c)
		} else {
			due = due || !e.now.Before(a.due)
		}
	}
	if !due {
		return nil
	}
	var out []ackFrame
	for _, id := range slices.SortedFunc(maps.Keys(c.acks), cmpID) {
		if !e.durable(c.acks[id].gen) {
			continue
		}
		a := ackFrame{seq: id.seq, partial: c.acks[id].partial}
		if id.epoch != s.peerEpoch {
			a.orig = id.epoch
		}
		out = append(out, a)
		delete(c.acks, id)
	}
	return out
}

func cmpID(a, b msgID) int {
	if a.epoch != b.epoch {
		return int(min(max(int64(a.epoch)-int64(b.epoch), -1), 1))
	}
	return int(a.seq) - int(b.seq)
}

// assign numbers m in session s and splits it into fragments that fit the
// link's frames.
func (e *Engine) assign(m *outMsg, s *session, p Profile) bool {
	chunk := p.FrameSize - core.EncryptedSize(0) - maxDataHeader
	n := max(1, (len(m.text)+chunk-1)/chunk)
	if n > maxFragments {
		e.fail(m, fmt.Sprintf("%d bytes need %d fragments on this link, at most %d", len(m.text), n, maxFragments))
		return false
	}
	m.assigned, m.id = true, msgID{s.myEpoch, uint16(s.seq)}
	s.seq++
	e.changed(0)
	m.gen = e.gen
	for i := range n {
		m.frags = append(m.frags, m.text[i*chunk:min((i+1)*chunk, len(m.text))])
	}
	m.pk, m.acked = make([]*outPacket, n), make([]bool, n)
	return true
}

// frame is fragment i of m as sent in session s.
func (m *outMsg) frame(i int, s *session) *dataFrame {
	d := &dataFrame{seq: m.id.seq, idx: i, count: len(m.frags), text: m.frags[i]}
	if m.id.epoch != s.myEpoch {
		d.orig = m.id.epoch
	}
	if i == 0 {
		d.time = max(min((m.created.UnixMilli()-int64(m.id.epoch))/1000, maxTimeDelta), -maxTimeDelta)
	}
	return d
}

func (e *Engine) fail(m *outMsg, why string) {
	c := m.c
	c.queue = slices.DeleteFunc(c.queue, func(x *outMsg) bool { return x == m })
	e.background()
	e.recordState(m.mid, Failed, why)
	e.emitEvent(Event{Kind: EventDelivery, Contact: c.name, ID: m.mid, State: Failed, Reason: why})
}

// onAck: the contact acknowledged one of our messages, or fragments of it.
func (e *Engine) onAck(c *contact, s *session, a ackFrame) {
	id := msgID{s.myEpoch, a.seq}
	if a.orig != 0 {
		id.epoch = a.orig
	}
	i := slices.IndexFunc(c.queue, func(m *outMsg) bool { return m.assigned && m.id == id })
	if i < 0 {
		return
	}
	m := c.queue[i]
	if a.partial == nil {
		c.queue = slices.Delete(c.queue, i, i+1)
		e.background()
		e.recordState(m.mid, Delivered, "")
		if !m.sent { // acknowledged before the Sent event was due
			e.emitEvent(Event{Kind: EventDelivery, Contact: c.name, ID: m.mid, State: Sent})
		}
		e.emitEvent(Event{Kind: EventDelivery, Contact: c.name, ID: m.mid, State: Delivered})
		return
	}
	for f := range m.frags {
		if f/8 < len(a.partial) && a.partial[f/8]&(1<<(f%8)) != 0 {
			m.acked[f] = true
		}
	}
}

// onData receives one fragment: a duplicate is acknowledged again and not
// delivered; a complete message is delivered once.
func (e *Engine) onData(c *contact, s *session, d *dataFrame, hint uint32) {
	p := e.profile(c)
	id := msgID{s.peerEpoch, d.seq}
	if d.orig != 0 {
		id.epoch = d.orig
	}
	s.recvHints = append(s.recvHints, hintAck{hint, id})
	if len(s.recvHints) > maxRecvHints {
		s.recvHints = s.recvHints[1:]
	}
	if d, dup := c.delivered[id]; dup {
		e.ack(c, id, nil, p.AckDelay, d.gen)
		return
	}
	if d.count == 1 {
		e.deliver(c, id, d.time, d.text)
		return
	}
	pm := c.partial[id]
	if pm == nil {
		if len(c.partial) >= maxPartial || e.partialBytes+len(d.text) > maxPartialAll {
			e.drop(Addr{}, c.name, "reassembly buffers full: fragment dropped")
			return
		}
		pm = &partialMsg{parts: make([][]byte, d.count), have: make([]bool, d.count), started: e.now}
		c.partial[id] = pm
	}
	if len(pm.parts) != d.count || pm.bytes+len(d.text) > e.cfg.MaxMessage {
		e.drop(Addr{}, c.name, "fragment does not fit its message")
		return
	}
	if !pm.have[d.idx] {
		pm.parts[d.idx], pm.have[d.idx] = d.text, true
		pm.n++
		pm.bytes += len(d.text)
		e.partialBytes += len(d.text)
		if d.idx == 0 {
			pm.time = d.time
		}
	}
	if pm.n < d.count {
		bits := make([]byte, (d.count+7)/8)
		for i, h := range pm.have {
			if h {
				bits[i/8] |= 1 << (i % 8)
			}
		}
		e.ack(c, id, bits, p.AckDelay, 0)
		return
	}
	delete(c.partial, id)
	e.partialBytes -= pm.bytes
	e.deliver(c, id, pm.time, slices.Concat(pm.parts...))
}

func (e *Engine) deliver(c *contact, id msgID, t int64, text []byte) {
	if len(c.delivered) >= maxRemembered {
		var oldest msgID
		first := true
		for k, d := range c.delivered {
			if first || d.at.Before(c.delivered[oldest].at) {
				oldest, first = k, false
			}
		}
		delete(c.delivered, oldest)
	}
	p := e.profile(c)
	e.changed(min(p.AckDelay, e.cfg.SaveEvery)) // the acknowledgement waits for it
	c.delivered[id] = delivered{e.now, e.gen}
	ev := Event{Kind: EventMessage, Contact: c.name, Text: text, Verified: c.verified,
		Seq: id.epoch<<16 | uint64(id.seq), SentAt: time.UnixMilli(int64(id.epoch) + t*1000)}
	e.record(Record{Contact: c.name, Text: slices.Clone(text), At: e.now, SentAt: ev.SentAt, Seq: ev.Seq, Verified: c.verified})
	if e.cfg.Durable { // reported once saved: a crash before cannot show it twice
		ev.At = e.now
		e.held = append(e.held, heldEvent{e.gen, ev})
	} else {
		e.emitEvent(ev)
	}
	e.ack(c, id, nil, p.AckDelay, e.gen)
}

// ack schedules an acknowledgement of id (partial: the fragments so far)
// within delay, when it may ride on other traffic, once the change of
// generation gen is saved.
func (e *Engine) ack(c *contact, id msgID, partial []byte, delay time.Duration, gen uint64) {
	a := c.acks[id]
	if a == nil {
		a = &ackDue{due: e.now.Add(delay)}
		c.acks[id] = a
	}
	a.partial, a.gen = partial, max(a.gen, gen)
	if len(c.acks) > maxAcks {
		a.due = e.now
	}
}

// onDuplicate: a packet we opened before came again, so the peer did not
// hear our acknowledgement of what it carried.
func (e *Engine) onDuplicate(s *session, packet []byte) {
	e.touch(s.c)
	hint, _ := core.Hint(packet)
	for _, h := range s.recvHints {
		if h.hint != hint {
			continue
		}
		c := s.c
		if d, done := c.delivered[h.id]; done {
			e.ack(c, h.id, nil, 0, d.gen)
		} else if pm := c.partial[h.id]; pm != nil {
			bits := make([]byte, (len(pm.have)+7)/8)
			for i, have := range pm.have {
				if have {
					bits[i/8] |= 1 << (i % 8)
				}
			}
			e.ack(c, h.id, bits, 0, 0)
		}
		return
	}
}

// deadlines lists when c next needs the engine.
func (c *contact) deadlines(e *Engine) []time.Time {
	p := e.profile(c)
	var t []time.Time
	if c.pending != nil {
		t = append(t, c.pending.next)
	} else if (len(c.queue) > 0 || len(c.acks) > 0) && c.current == nil {
		start := c.nextHS // zero: started already
		if c.candidate != nil && c.candidate.started.Add(p.RTO).After(start) {
			start = c.candidate.started.Add(p.RTO)
		}
		t = append(t, start)
	}
	if s := c.current; s != nil && c.pending == nil && len(c.queue)+len(c.acks) > 0 {
		renew := s.started.Add(p.RenewAfter)
		if c.nextHS.After(renew) {
			renew = c.nextHS
		}
		t = append(t, renew)
	}
	t = append(t, c.blocked)
	if c.candidate != nil {
		t = append(t, c.candidate.started.Add(p.Grace))
	}
	for _, s := range c.old {
		t = append(t, s.retire)
	}
	for _, m := range c.queue {
		t = append(t, m.deadline)
		for i, pk := range m.pk {
			if pk != nil && !m.acked[i] {
				t = append(t, pk.next)
			}
		}
	}
	for _, a := range c.acks {
		if e.durable(a.gen) { // the others wake up with Saved
			t = append(t, a.due)
		}
	}
	for _, pm := range c.partial {
		t = append(t, pm.started.Add(p.Reassembly))
	}
	return t
}
