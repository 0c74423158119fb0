package messenger

import (
	"slices"
	"time"
)

// Durability (docs/STORAGE.md). Every change to what must outlive the
// process bumps a generation and says how soon it must reach the disk; the
// host saves what Changed returns when Deadline comes and reports the save
// with Saved. Two things wait for the save that records them: the
// acknowledgement of a received message (so a crash cannot lose a message
// its sender was told is delivered) and the first transmission of a
// message in the session that numbered it (so a crash cannot make the same
// message go out under a second number, which the receiver would deliver
// twice).

// changed marks the state changed; it must be saved within delay.
func (e *Engine) changed(delay time.Duration) {
	e.gen++
	e.dirty = true
	if due := e.now.Add(delay); e.saveAt.IsZero() || due.Before(e.saveAt) {
		e.saveAt = due
	}
}

// background: a change that risks nothing if lost (a duplicate delivery is
// refused by the receiver's memory, a replay mark only narrows a window).
func (e *Engine) background() { e.changed(e.cfg.SaveEvery) }

// durable reports whether the change of generation gen is on disk.
func (e *Engine) durable(gen uint64) bool { return !e.cfg.Durable || gen <= e.savedGen }

// wait records that c has something waiting for a save.
func (e *Engine) wait(c *contact) { e.waiting[c] = true }

// State returns the engine's state to save.
func (e *Engine) State() []byte { return e.save() }

// Changed returns the state when it changed and (for a Durable engine) its
// save is due: the host saves it, then calls Saved. Nothing is encoded when
// nothing is due. A save that fails is simply not reported: the state is
// offered again SaveEvery later, and what waits for it keeps waiting.
func (e *Engine) Changed() ([]byte, bool) {
	if !e.dirty || (e.cfg.Durable && e.now.Before(e.saveAt)) {
		return nil, false
	}
	e.trimHistory()
	e.encodedGen = e.gen
	if e.cfg.Durable {
		e.saveAt = e.now.Add(e.cfg.SaveEvery) // offered again if no Saved comes
	} else {
		e.dirty, e.saveAt = false, time.Time{}
	}
	return e.save(), true
}

// Saved reports that the state the last Changed returned is on disk: what
// waited for it goes out (Poll).
func (e *Engine) Saved() {
	e.savedGen = e.encodedGen
	if e.gen == e.encodedGen {
		e.dirty, e.saveAt = false, time.Time{}
	}
	n := 0
	for _, h := range e.held {
		if h.gen <= e.savedGen {
			e.emitEvent(h.ev)
		} else {
			e.held[n] = h
			n++
		}
	}
	e.held = e.held[:n]
	for c := range e.waiting {
		e.touch(c)
	}
	clear(e.waiting)
	e.pump()
}

// heldEvent is a message event waiting for the save that records it.
type heldEvent struct {
	gen uint64
	ev  Event
}

// saveDeadline is when the host must next save (zero: nothing to save).
func (e *Engine) saveDeadline() time.Time {
	if !e.dirty || !e.cfg.Durable {
		return time.Time{}
	}
	return e.saveAt
}

// Record is a message in the history: one this node sent (Out, with its
// current State) or one it received.
type Record struct {
	Contact  string
	Out      bool
	ID       MsgID         // Out: the id Send returned
	State    DeliveryState // Out
	Reason   string        // Out, Failed: why
	Text     []byte
	At       time.Time // accepted by Send, or received
	SentAt   time.Time // received: the sender's clock when it was written
	Seq      uint64    // received: as in Event
	Verified bool      // received: the contact was verified then
}

// SetHistory changes how much history is kept (Config.History and
// HistoryAge); what no longer fits is dropped at once.
func (e *Engine) SetHistory(keep int, age time.Duration) {
	e.cfg.History, e.cfg.HistoryAge = min(max(keep, 0), MaxHistory), max(age, 0)
	n := len(e.history)
	if e.trimHistory(); len(e.history) < n {
		e.changed(0) // the user asked for less kept: off the disk at the next save, not within SaveEvery
	}
}

// MaxHistory bounds Config.History (LM_HISTORY_MAX in the C header).
const MaxHistory = 10_000

// History returns the kept messages, oldest first.
func (e *Engine) History() []Record {
	e.trimHistory()
	out := slices.Clone(e.history)
	for i := range out {
		out[i].Text = slices.Clone(out[i].Text)
	}
	return out
}

// HistoryAt returns the i-th kept message, oldest first, for hosts that
// read the history one message at a time.
func (e *Engine) HistoryAt(i int) (Record, bool) {
	if i < 0 || i >= len(e.history) {
		return Record{}, false
	}
	r := e.history[i]
	r.Text = slices.Clone(r.Text)
	return r, true
}

func (e *Engine) record(r Record) {
	if e.cfg.History == 0 {
		return
	}
	e.history = append(e.history, r)
	e.trimHistory()
}

// recordState updates an outgoing message's record.
func (e *Engine) recordState(id MsgID, st DeliveryState, why string) {
	for i := len(e.history) - 1; i >= 0; i-- {
		if r := &e.history[i]; r.Out && r.ID == id {
			r.State, r.Reason = st, why
			return
		}
	}
}

func (e *Engine) trimHistory() {
	n := max(len(e.history)-e.cfg.History, 0)
	if age := e.cfg.HistoryAge; age > 0 {
		for n < len(e.history) && e.now.Sub(e.history[n].At) > age {
			n++
		}
	}
	if n > 0 {
		e.history = slices.Delete(e.history, 0, n)
		e.background()
	}
}
