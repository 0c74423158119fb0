package core

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
)

// hintKey derives a direction's transport hints (docs/PROTOCOL.md §4):
// hint(n) = HMAC-SHA256(hk, n as 8 bytes big endian)[0:4]. Hints look random
// to an observer, so two packets of one session cannot be linked, and they
// let the receiver find a packet's session and number without trying keys.
type hintKey struct{ p *[32]byte }

func (k hintKey) free() { secret.Free(k.p) }

// hints returns hint(n) for n in [from, from+count).
func (k hintKey) hints(from uint64, count int) []uint32 {
	out := make([]uint32, count)
	secret.Do(func() {
		var h [32]byte
		var n [8]byte
		for i := range out {
			binary.BigEndian.PutUint64(n[:], from+uint64(i))
			prim.HMAC(&h, k.p[:], n[:])
			out[i] = binary.BigEndian.Uint32(h[:])
		}
		secret.Wipe(h[:])
	})
	return out
}

// maxLookahead bounds Config.Lookahead: the chain steps one genuine packet
// may cost, and the hints each session keeps ready.
const maxLookahead = 1024

// recentHints is how many hints of opened messages a window remembers, to
// tell a duplicate (ErrReplay: the sender missed our acknowledgement) from
// a packet that is not ours.
const recentHints = 32

// recvWindow is a session's receiving side (docs/PROTOCOL.md §4): the chain
// key, the number of the next message it yields, the hints of the messages
// it recognises (the next Lookahead numbers and the skipped ones still
// inside the window) and the keys of those skipped. Late and reordered
// messages within the window open exactly once; anything that fails changes
// nothing.
type recvWindow struct {
	ck        chainKey
	hk        hintKey
	next      uint64
	ahead     []uint32 // hints of next, next+1, ...
	skipped   map[uint64]skippedKey
	recent    []uint32 // hints of the last opened numbers
	size      int      // the window W
	lookahead int
	maxAge    time.Duration // of a skipped key
	limit     uint64        // numbers at or past it are refused (ErrLimit)
	watch     func(added, removed []uint32)
}

type skippedKey struct {
	k    messageKey
	at   time.Time
	hint uint32
}

// init computes the first hints; the window starts at message 0.
func (w *recvWindow) init() {
	w.ahead = w.hk.hints(0, int(min(uint64(w.lookahead), w.limit)))
}

// live returns every hint the window recognises, for a demultiplexer.
func (w *recvWindow) live() []uint32 {
	h := append(slices.Clone(w.ahead), w.recent...)
	for _, sk := range w.skipped {
		h = append(h, sk.hint)
	}
	return h
}

// find returns the numbers whose hint is h (almost always at most one), or
// ErrReplay for a message opened recently, or ErrTooOld for a hint the
// window does not know: a message outside the window, another session's, or
// a forgery.
func (w *recvWindow) find(h uint32) ([]uint64, error) {
	var ns []uint64
	for i, x := range w.ahead {
		if x == h {
			ns = append(ns, w.next+uint64(i))
		}
	}
	for n, sk := range w.skipped {
		if sk.hint == h {
			ns = append(ns, n)
		}
	}
	if len(ns) > 0 {
		return ns, nil
	}
	if slices.Contains(w.recent, h) {
		return nil, ErrReplay
	}
	return nil, ErrTooOld
}

// open runs f with message n's key. If f succeeds the window commits: the
// chain moves past n keeping the skipped keys in between, or n's stored key
// is consumed. If anything fails the window is as it was. f runs inside
// secret.Do and must not allocate.
func (w *recvWindow) open(n uint64, now time.Time, f func(mk messageKey) error) (err error) {
	w.expire(now)
	if n >= w.limit {
		return ErrLimit
	}
	if n < w.next {
		sk, ok := w.skipped[n]
		if !ok {
			if w.next-n <= uint64(w.size) {
				return ErrReplay
			}
			return ErrTooOld
		}
		if secret.Do(func() { err = f(sk.k) }); err != nil {
			return err
		}
		delete(w.skipped, n)
		sk.k.free()
		w.opened(sk.hint)
		return nil
	}
	if n-w.next >= uint64(len(w.ahead)) {
		return ErrTooOld
	}
	// Step a copy of the chain (temporary slots: ck replaces w.ck on
	// success) and open the message before anything else is allocated, so
	// a forged packet costs HMACs but never locked memory.
	cp, err := secret.NewTemp()
	if err != nil {
		return err
	}
	ck := chainKey{cp}
	mk, err := newTempMessageKey()
	if err != nil {
		ck.free()
		return err
	}
	defer mk.free()
	secret.Do(func() {
		*ck.p = *w.ck.p
		for i := w.next; i <= n; i++ {
			ck.step(mk)
		}
		err = f(mk)
	})
	if err != nil {
		ck.free()
		return err
	}
	lost := w.keepSkipped(n, now, mk)
	w.ck.free()
	shift := int(n + 1 - w.next)
	old := w.ahead
	w.ck, w.next = ck, n+1
	fresh := w.hk.hints(w.next+uint64(len(old)-shift), int(min(uint64(shift), w.limit-min(w.limit, w.next+uint64(len(old)-shift)))))
	w.ahead = append(slices.Clone(old[shift:]), fresh...)
	w.opened(old[shift-1])
	w.notify(fresh, lost)
	w.expire(now)
	return nil
}

// opened remembers h as a recently opened message's hint.
func (w *recvWindow) opened(h uint32) {
	if len(w.recent) == recentHints {
		w.notify(nil, w.recent[:1])
		w.recent = w.recent[1:]
	}
	w.recent = append(w.recent, h)
}

func (w *recvWindow) notify(added, removed []uint32) {
	if w.watch != nil && len(added)+len(removed) > 0 {
		w.watch(added, removed)
	}
}

// keepSkipped stores the keys of the messages between next and n that are
// still inside the window, re-deriving them from the chain (scratch is a
// free slot), and returns the hints of those it does not keep. When locked
// memory is short it keeps fewer, the latest: the others count as lost, and
// the session goes on.
func (w *recvWindow) keepSkipped(n uint64, now time.Time, scratch messageKey) (lost []uint32) {
	want := min(n-w.next, uint64(w.size-1))
	var keys []messageKey
	for range want {
		p, err := secret.New()
		if err != nil {
			break
		}
		keys = append(keys, messageKey{p})
	}
	first := n - uint64(len(keys))
	for i := w.next; i < first; i++ {
		lost = append(lost, w.ahead[i-w.next])
	}
	if len(keys) == 0 {
		return lost
	}
	if w.skipped == nil {
		w.skipped = make(map[uint64]skippedKey)
	}
	secret.Do(func() {
		var d [32]byte
		discard := messageKey{&d}
		ck := chainKey{scratch.p} // scratch walks the chain
		*ck.p = *w.ck.p
		for i := w.next; i < n; i++ {
			if i < first {
				ck.step(discard)
				continue
			}
			k := keys[i-first]
			ck.step(k)
			w.skipped[i] = skippedKey{k, now, w.ahead[i-w.next]}
		}
		secret.Wipe(d[:])
	})
	return lost
}

// expire drops skipped keys that are older than maxAge or have fallen out of
// the window.
func (w *recvWindow) expire(now time.Time) {
	var gone []uint32
	for i, sk := range w.skipped {
		if now.Sub(sk.at) > w.maxAge || w.next-i > uint64(w.size) {
			sk.k.free()
			delete(w.skipped, i)
			gone = append(gone, sk.hint)
		}
	}
	if len(w.skipped) == 0 {
		w.skipped = nil
	}
	w.notify(nil, gone)
}

func (w *recvWindow) free() {
	w.ck.free()
	w.hk.free()
	w.ck, w.hk = chainKey{}, hintKey{}
	for _, sk := range w.skipped {
		sk.k.free()
	}
	w.skipped = nil
}
