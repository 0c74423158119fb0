package messenger

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/core"
)

// The state that outlives the process (docs/STORAGE.md): contacts, the
// highest handshake timestamps accepted from each (so a replayed handshake
// is refused after a restart too), where each was last heard, this node's
// last handshake timestamp, the messages queued for each contact with the
// number they were sent under, the ids of messages recently delivered from
// each (refused if they come again), and the history. No session key is
// ever in it: sessions are re-established by handshake after a restart.

// stateVersion 2 added queues, delivered ids, message 2 marks and history;
// version 1 files are read.
const stateVersion = 2

type stateFile struct {
	Version  int            `cbor:"1,keyasint"`
	LastTS   uint64         `cbor:"2,keyasint"`
	Contacts []contactState `cbor:"3,keyasint"`
	Owner    []byte         `cbor:"4,keyasint"` // the node's identity ID
	NextID   uint64         `cbor:"5,keyasint,omitempty"`
	History  []recordState  `cbor:"6,keyasint,omitempty"`
}

type contactState struct {
	Name      string        `cbor:"1,keyasint"`
	Card      []byte        `cbor:"2,keyasint"`
	Verified  bool          `cbor:"3,keyasint,omitempty"`
	Addrs     [][]string    `cbor:"4,keyasint,omitempty"`
	Last      []string      `cbor:"5,keyasint,omitempty"`
	HW        uint64        `cbor:"6,keyasint,omitempty"`
	Added     int64         `cbor:"7,keyasint"`
	HW2       uint64        `cbor:"8,keyasint,omitempty"`
	Queue     []queuedState `cbor:"9,keyasint,omitempty"`
	Delivered [][3]uint64   `cbor:"10,keyasint,omitempty"` // epoch, number, when (ms)
}

// queuedState is a message not yet delivered or failed. A numbered one
// (Epoch set) keeps its number and fragmentation for good: the receiver
// knows it by them.
type queuedState struct {
	ID       uint64 `cbor:"1,keyasint"`
	Text     []byte `cbor:"2,keyasint"`
	Created  int64  `cbor:"3,keyasint"` // ms
	Deadline int64  `cbor:"4,keyasint"` // ms
	Epoch    uint64 `cbor:"5,keyasint,omitempty"`
	Seq      uint16 `cbor:"6,keyasint,omitempty"`
	Frags    []int  `cbor:"7,keyasint,omitempty"` // fragment sizes
	Sent     bool   `cbor:"8,keyasint,omitempty"`
}

type recordState struct {
	Contact  string `cbor:"1,keyasint"`
	Out      bool   `cbor:"2,keyasint,omitempty"`
	ID       uint64 `cbor:"3,keyasint,omitempty"`
	State    int    `cbor:"4,keyasint,omitempty"`
	Reason   string `cbor:"5,keyasint,omitempty"`
	Text     []byte `cbor:"6,keyasint"`
	At       int64  `cbor:"7,keyasint"` // ms
	SentAt   int64  `cbor:"8,keyasint,omitempty"`
	Seq      uint64 `cbor:"9,keyasint,omitempty"`
	Verified bool   `cbor:"10,keyasint,omitempty"`
}

var (
	stateEnc, _ = cbor.CoreDetEncOptions().EncMode()
	stateDec, _ = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxArrayElements:  65536,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
)

func (e *Engine) save() []byte {
	f := stateFile{Version: stateVersion, LastTS: e.lastTS, Owner: e.myID[:], NextID: uint64(e.nextID)}
	for _, ci := range e.Contacts() {
		c := e.contacts[ci.Name]
		cs := contactState{Name: c.name, Card: c.card.Bytes(), Verified: c.verified, HW: c.hw, HW2: c.hw2, Added: c.added.Unix()}
		for _, a := range c.addrs {
			cs.Addrs = append(cs.Addrs, []string{a.Link, a.Addr})
		}
		if c.last != (Addr{}) {
			cs.Last = []string{c.last.Link, c.last.Addr}
		}
		for _, m := range c.queue {
			q := queuedState{ID: uint64(m.mid), Text: m.text, Created: m.created.UnixMilli(), Deadline: m.deadline.UnixMilli(), Sent: m.sent}
			if m.assigned {
				q.Epoch, q.Seq = m.id.epoch, m.id.seq
				for _, f := range m.frags {
					q.Frags = append(q.Frags, len(f))
				}
			}
			cs.Queue = append(cs.Queue, q)
		}
		for _, id := range slices.SortedFunc(maps.Keys(c.delivered), cmpID) {
			cs.Delivered = append(cs.Delivered, [3]uint64{id.epoch, uint64(id.seq), uint64(c.delivered[id].at.UnixMilli())})
		}
		f.Contacts = append(f.Contacts, cs)
	}
	for _, r := range e.history {
		f.History = append(f.History, recordState{Contact: r.Contact, Out: r.Out, ID: uint64(r.ID), State: int(r.State),
			Reason: r.Reason, Text: r.Text, At: r.At.UnixMilli(), SentAt: msOrZero(r.SentAt), Seq: r.Seq, Verified: r.Verified})
	}
	b, _ := stateEnc.Marshal(f)
	return b
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// load restores a saved state. A state that does not parse, or breaks the
// engine's rules (two contacts sharing a key, a queued message that does
// not fit its fragments), is refused whole: the host keeps the file and
// reports it.
func (e *Engine) load(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var f stateFile
	if err := stateDec.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%w: %v", ErrStateFile, err)
	}
	if c, err := stateEnc.Marshal(f); err != nil || !bytes.Equal(c, b) {
		return fmt.Errorf("%w: not its canonical encoding", ErrStateFile)
	}
	if f.Version > stateVersion {
		return fmt.Errorf("version %d: %w", f.Version, ErrStateVersion)
	}
	if !bytes.Equal(f.Owner, e.myID[:]) {
		return fmt.Errorf("%w: it belongs to another identity (fingerprint %s)", ErrStateOwner, core.FormatFingerprint([32]byte(append(f.Owner, make([]byte, 32)...)[:32])))
	}
	e.lastTS, e.nextID = f.LastTS, MsgID(f.NextID)
	for _, cs := range f.Contacts {
		if err := e.loadContact(cs); err != nil {
			return fmt.Errorf("%w: contact %q: %w", ErrStateFile, cs.Name, err)
		}
	}
	for _, r := range f.History {
		if len(r.Text) > e.cfg.MaxMessage || r.State < 0 || r.State > int(Failed) {
			return fmt.Errorf("%w: history record", ErrStateFile)
		}
		e.history = append(e.history, Record{Contact: r.Contact, Out: r.Out, ID: MsgID(r.ID), State: DeliveryState(r.State),
			Reason: r.Reason, Text: r.Text, At: time.UnixMilli(r.At), SentAt: timeOrZero(r.SentAt), Seq: r.Seq, Verified: r.Verified})
	}
	e.dirty, e.gen, e.saveAt = false, 0, time.Time{}
	return nil
}

func (e *Engine) loadContact(cs contactState) error {
	if _, err := e.AddContact(cs.Name, cs.Card, false); err != nil {
		return err
	}
	c := e.contacts[cs.Name]
	c.verified, c.hw, c.hw2, c.added = cs.Verified, cs.HW, cs.HW2, time.Unix(cs.Added, 0)
	for _, a := range cs.Addrs {
		if len(a) != 2 {
			return fmt.Errorf("address")
		}
		c.addrs = append(c.addrs, Addr{a[0], a[1]})
	}
	switch len(cs.Last) {
	case 0:
	case 2:
		e.setLast(c, Addr{cs.Last[0], cs.Last[1]})
	default:
		return fmt.Errorf("last address")
	}
	for _, d := range cs.Delivered {
		if d[1] > maxSeq || d[0] == 0 {
			return fmt.Errorf("delivered message id")
		}
		c.delivered[msgID{d[0], uint16(d[1])}] = delivered{at: time.UnixMilli(int64(d[2]))}
	}
	for _, q := range cs.Queue {
		m := &outMsg{mid: MsgID(q.ID), c: c, text: q.Text, created: time.UnixMilli(q.Created),
			deadline: time.UnixMilli(q.Deadline), sent: q.Sent}
		if len(q.Text) > e.cfg.MaxMessage || MsgID(q.ID) > e.nextID || q.ID == 0 {
			return fmt.Errorf("queued message %d", q.ID)
		}
		if q.Epoch != 0 {
			m.assigned, m.id = true, msgID{q.Epoch, q.Seq}
			rest := m.text
			for _, n := range q.Frags {
				if n < 0 || n > len(rest) || len(q.Frags) > maxFragments {
					return fmt.Errorf("queued message %d: fragments", q.ID)
				}
				m.frags, rest = append(m.frags, rest[:n]), rest[n:]
			}
			if len(rest) != 0 || len(m.frags) == 0 {
				return fmt.Errorf("queued message %d: fragments", q.ID)
			}
			m.pk, m.acked = make([]*outPacket, len(m.frags)), make([]bool, len(m.frags))
		} else if len(q.Frags) != 0 || q.Seq != 0 {
			return fmt.Errorf("queued message %d: fragments without a number", q.ID)
		}
		c.queue = append(c.queue, m)
	}
	if len(c.queue) > 0 {
		e.touch(c)
	}
	return nil
}
