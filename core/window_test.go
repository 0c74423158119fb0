package core

import (
	"errors"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/internal/secret"
)

// Boundary table for recvWindow alone (W = 8, lookahead 1025, limit 1041):
// each row opens one number, in order; f refuses the key where the row says
// forged. Checked: the error, the next number and the skipped keys kept.
func TestRecvWindowBoundaries(t *testing.T) {
	p, _ := secret.New()
	h, _ := secret.New()
	w := &recvWindow{ck: chainKey{p}, hk: hintKey{h}, size: 8, lookahead: 1025, maxAge: time.Hour, limit: 1041}
	w.init()
	defer w.free()
	start := time.Now()
	for i, c := range []struct {
		n      uint64
		forged bool
		later  time.Duration // time since start
		want   error
		next   uint64
		kept   int
	}{
		{0, false, 0, nil, 1, 0},
		{0, false, 0, ErrReplay, 1, 0},
		{5, true, 0, errForged, 1, 0}, // a forgery ahead commits nothing
		{5, false, 0, nil, 6, 4},      // keeps 1..4
		{3, false, 0, nil, 6, 3},      // consumes 3
		{3, false, 0, ErrReplay, 6, 3},
		{4, true, 0, errForged, 6, 3}, // a forgery behind keeps the key
		{14, false, 0, nil, 15, 7},    // keeps 7..13 (W-1); 6 is lost; 1, 2, 4 fall out
		{6, false, 0, ErrTooOld, 15, 7},
		{7, false, 0, nil, 15, 6}, // exactly W behind, kept
		{7, false, 0, ErrReplay, 15, 6},
		{15 + 1025, false, 0, ErrTooOld, 15, 6}, // past the lookahead
		{15 + 1024, false, 0, nil, 1040, 7},
		{1041, false, 0, ErrLimit, 1040, 7},
		{1040, false, 0, nil, 1041, 6},                   // the last number below the limit; 1032 falls out
		{1035, false, 2 * time.Hour, ErrReplay, 1041, 0}, // skipped keys age out
	} {
		err := w.open(c.n, start.Add(c.later), func(messageKey) error {
			if c.forged {
				return errForged
			}
			return nil
		})
		if (c.want == nil) != (err == nil) || !errors.Is(err, c.want) {
			t.Fatalf("row %d (n=%d): %v, want %v", i, c.n, err, c.want)
		}
		if w.next != c.next || len(w.skipped) != c.kept {
			t.Fatalf("row %d (n=%d): next %d with %d skipped keys, want %d and %d", i, c.n, w.next, len(w.skipped), c.next, c.kept)
		}
	}
}

var errForged = errors.New("forged")
