package messenger

import (
	"container/heap"
	"slices"
	"strings"
	"time"
)

// Every call costs the engine only the contacts it touches and those whose
// timers are due: a heap orders contacts by their next deadline, and
// indexes find a contact by DH key and by last address, so a packet that
// concerns no contact (a forgery, a stranger) costs the same at 1 and at
// 10,000 contacts.

type schedule []*contact

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].due.Before(s[j].due) }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].slot, s[j].slot = i, j
}
func (s *schedule) Push(x any) {
	c := x.(*contact)
	c.slot = len(*s)
	*s = append(*s, c)
}
func (s *schedule) Pop() any {
	old := *s
	c := old[len(old)-1]
	*s, c.slot = old[:len(old)-1], -1
	return c
}

// touch marks c for service at the end of this call.
func (e *Engine) touch(c *contact) { e.touched[c] = true }

// reschedule recomputes c's next deadline and its place in the heap.
func (e *Engine) reschedule(c *contact) {
	var due time.Time
	for _, t := range c.deadlines(e) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	c.due = due
	switch {
	case due.IsZero() && c.slot >= 0:
		heap.Remove(&e.sched, c.slot)
	case due.IsZero():
	case c.slot >= 0:
		heap.Fix(&e.sched, c.slot)
	default:
		heap.Push(&e.sched, c)
	}
}

// unschedule takes a removed contact out of the heap and the indexes.
func (e *Engine) unschedule(c *contact) {
	if c.slot >= 0 {
		heap.Remove(&e.sched, c.slot)
	}
	delete(e.touched, c)
	e.unindex(c)
	e.setLast(c, Addr{})
	e.setAddrs(c, nil)
}

// pump services the touched contacts, then those whose time has come, each
// once, in name order.
func (e *Engine) pump() {
	run := make([]*contact, 0, len(e.touched))
	for c := range e.touched {
		run = append(run, c)
	}
	clear(e.touched)
	for len(e.sched) > 0 && !e.sched[0].due.After(e.now) {
		run = append(run, heap.Pop(&e.sched).(*contact))
	}
	slices.SortFunc(run, func(a, b *contact) int { return strings.Compare(a.name, b.name) })
	run = slices.Compact(run)
	for _, c := range run {
		if e.contacts[c.name] != c { // removed meanwhile
			continue
		}
		e.service(c)
		e.reschedule(c)
	}
	if !e.answeredNext.IsZero() && !e.now.Before(e.answeredNext) {
		e.answeredNext = time.Time{}
		for h, a := range e.answered {
			if exp := a.at.Add(answerKeep); !e.now.Before(exp) {
				delete(e.answered, h)
			} else if e.answeredNext.IsZero() || exp.Before(e.answeredNext) {
				e.answeredNext = exp
			}
		}
	}
}

// index records the DH keys of c's card; unindex forgets them.
func (e *Engine) index(c *contact) {
	for _, k := range c.card.DHKeys() {
		e.dhIndex[k] = c
	}
}

func (e *Engine) unindex(c *contact) {
	for _, k := range c.card.DHKeys() {
		if e.dhIndex[k] == c {
			delete(e.dhIndex, k)
		}
	}
}

// setAddrs replaces c's configured addresses, keeping their index (radio
// addresses, everyone's, are not indexed).
func (e *Engine) setAddrs(c *contact, addrs []Addr) {
	for _, a := range c.addrs {
		if cs := slices.DeleteFunc(e.byAddr[a], func(x *contact) bool { return x == c }); len(cs) > 0 {
			e.byAddr[a] = cs
		} else {
			delete(e.byAddr, a)
		}
	}
	c.addrs = addrs
	for _, a := range addrs {
		if a.Addr != "" && !slices.Contains(e.byAddr[a], c) {
			e.byAddr[a] = append(e.byAddr[a], c)
		}
	}
}

// setLast moves c's last address, keeping the address index.
func (e *Engine) setLast(c *contact, a Addr) {
	if e.byLast[c.last] == c {
		delete(e.byLast, c.last)
	}
	c.last = a
	if a.Addr != "" { // a radio channel is everyone's address
		e.byLast[a] = c
	}
}
