package core

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Demux finds the session a transport packet belongs to by its hint, so a
// receiver with many sessions never tries keys on a packet that is not theirs
// (docs/PROTOCOL.md §4): a forged or foreign packet costs one map lookup
// whatever the number of sessions. It is safe for concurrent use.
type Demux struct {
	mu sync.Mutex
	m  map[uint32][]*Session
}

// NewDemux returns an empty Demux.
func NewDemux() *Demux { return &Demux{m: map[uint32][]*Session{}} }

// Add indexes s by every hint it recognises, and keeps the index current as
// s receives. A session belongs to at most one Demux.
func (d *Demux) Add(s *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.k.recv.watch = func(added, removed []uint32) { d.update(s, added, removed) }
	d.update(s, s.k.recv.live(), nil)
}

// Remove drops s from the index (Close does it too).
func (d *Demux) Remove(s *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.k.recv.watch != nil {
		s.k.recv.watch = nil
		d.update(s, nil, s.k.recv.live())
	}
}

func (d *Demux) update(s *Session, added, removed []uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range removed {
		l := d.m[h]
		if i := slices.Index(l, s); i >= 0 {
			l = slices.Delete(l, i, i+1)
		}
		if len(l) == 0 {
			delete(d.m, h)
		} else {
			d.m[h] = l
		}
	}
	for _, h := range added {
		d.m[h] = append(d.m[h], s)
	}
}

// Len is the number of hints indexed.
func (d *Demux) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

// Opened is a transport packet a Demux opened.
type Opened struct {
	Session   *Session
	Plaintext []byte
	Newest    bool // the highest message number the session has received
}

// Open decrypts a transport packet with the session its hint names. A
// duplicate of a packet opened recently returns its session and ErrReplay
// (the sender may have missed an acknowledgement); a packet no session
// recognises returns ErrTooOld.
func (d *Demux) Open(packet []byte) (Opened, error) {
	h, ok := Hint(packet)
	if !ok {
		return Opened{}, fmt.Errorf("open: not a transport packet: %w", ErrMalformed)
	}
	d.mu.Lock()
	cands := slices.Clone(d.m[h])
	d.mu.Unlock()
	err := ErrTooOld
	for _, s := range cands { // almost always one
		pt, newest, e := s.decrypt(packet)
		switch {
		case e == nil:
			return Opened{s, pt, newest}, nil
		case errors.Is(e, ErrReplay):
			return Opened{Session: s}, e
		}
		err = e
	}
	return Opened{}, fmt.Errorf("open: %w", err)
}
