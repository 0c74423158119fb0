package core

import (
	"fmt"
	"time"

	"github.com/loramesh/loramesh-core/internal/secret"
)

// recvWindow is a session's receiving side (docs/PROTOCOL.md §4): the chain
// key, the number of the next message it yields, and the keys of skipped
// messages still inside the window. Late and reordered messages within the
// window open exactly once; anything that fails changes nothing.
type recvWindow struct {
	ck      chainKey
	next    uint64
	skipped map[uint64]skippedKey
	size    int           // the window W
	maxAge  time.Duration // of a skipped key
	limit   uint64        // numbers at or past it are refused (ErrLimit)
}

type skippedKey struct {
	k  messageKey
	at time.Time
}

// maxJump bounds the chain steps one message may cost a receiver (a lost run
// longer than this needs a new handshake): a forged counter buys an attacker
// at most this many HMACs.
const maxJump = 1024

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
		return nil
	}
	if n-w.next > maxJump {
		return fmt.Errorf("too far ahead: %w", ErrTooOld)
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
	w.keepSkipped(n, now, mk)
	w.ck.free()
	w.ck, w.next = ck, n+1
	w.expire(now)
	return nil
}

// keepSkipped stores the keys of the messages between next and n that are
// still inside the window, re-deriving them from the chain (scratch is a
// free slot). When locked memory is short it keeps fewer, the latest: the
// others count as lost, and the session goes on.
func (w *recvWindow) keepSkipped(n uint64, now time.Time, scratch messageKey) {
	want := min(n-w.next, uint64(w.size-1))
	var keys []messageKey
	for range want {
		p, err := secret.New()
		if err != nil {
			break
		}
		keys = append(keys, messageKey{p})
	}
	if len(keys) == 0 {
		return
	}
	if w.skipped == nil {
		w.skipped = make(map[uint64]skippedKey)
	}
	first := n - uint64(len(keys))
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
			w.skipped[i] = skippedKey{k, now}
		}
		secret.Wipe(d[:])
	})
}

// expire drops skipped keys that are older than maxAge or have fallen out of
// the window.
func (w *recvWindow) expire(now time.Time) {
	for i, sk := range w.skipped {
		if now.Sub(sk.at) > w.maxAge || w.next-i > uint64(w.size) {
			sk.k.free()
			delete(w.skipped, i)
		}
	}
	if len(w.skipped) == 0 {
		w.skipped = nil
	}
}

func (w *recvWindow) free() {
	w.ck.free()
	w.ck = chainKey{}
	for _, sk := range w.skipped {
		sk.k.free()
	}
	w.skipped = nil
}
