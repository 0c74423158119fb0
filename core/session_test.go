package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
)

func send(t *testing.T, s *core.Session, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range n {
		ct, err := s.Encrypt([]byte(fmt.Sprint("msg ", i)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ct)
	}
	return out
}

func TestReorderWithinWindowDecryptsOnce(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, nil)
	cts := send(t, is, 10)
	for _, i := range []int{3, 0, 9, 1, 2, 8, 4, 7, 6, 5} {
		pt, err := rs.Decrypt(cts[i])
		if err != nil || string(pt) != fmt.Sprint("msg ", i) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	for i := range cts {
		if _, err := rs.Decrypt(cts[i]); !errors.Is(err, core.ErrReplay) {
			t.Fatalf("duplicate %d: %v", i, err)
		}
	}
}

// Boundary table for the receive window (default 64).
func TestWindowBoundaries(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.P256, &core.Config{Lookahead: 128})
	cts := send(t, is, 200)
	if _, err := rs.Decrypt(cts[100]); err != nil { // window is now 37..100
		t.Fatal(err)
	}
	for _, c := range []struct {
		n    int
		want error
	}{
		{36, core.ErrTooOld}, // 65 behind the next expected (101)
		{37, nil},            // exactly 64 behind
		{37, core.ErrReplay},
		{99, nil},
		{100, core.ErrReplay},
		{0, core.ErrTooOld},
		{101, nil},
	} {
		_, err := rs.Decrypt(cts[c.n])
		if (c.want == nil && err != nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Fatalf("message %d: got %v, want %v", c.n, err, c.want)
		}
	}
}

// A tampered, truncated or forged message changes nothing: the genuine one
// still decrypts, and so does everything after it.
func TestDecryptIsAtomic(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, nil)
	cts := send(t, is, 3)
	for i := range cts[1] {
		bad := bytes.Clone(cts[1])
		bad[i] ^= 0x04
		if _, err := rs.Decrypt(bad); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	for _, bad := range [][]byte{nil, {0x24}, {0x24, 1, 2, 3, 4}} {
		if _, err := rs.Decrypt(bad); !errors.Is(err, core.ErrMalformed) {
			t.Fatalf("malformed %x: %v", bad, err)
		}
	}
	for _, bad := range [][]byte{cts[1][:len(cts[1])-1], append(bytes.Clone(cts[1]), 0)} {
		if _, err := rs.Decrypt(bad); !errors.Is(err, core.ErrAuth) {
			t.Fatalf("truncated or extended %x: %v", bad, err)
		}
	}
	for i, ct := range cts {
		if _, err := rs.Decrypt(ct); err != nil {
			t.Fatalf("genuine message %d after forgeries: %v", i, err)
		}
	}
}

func TestMessageLimit(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, &core.Config{MaxMessages: 3})
	cts := send(t, is, 3)
	if _, err := is.Encrypt(nil); !errors.Is(err, core.ErrLimit) {
		t.Fatalf("send past the limit: %v", err)
	}
	for _, ct := range cts {
		if _, err := rs.Decrypt(ct); err != nil {
			t.Fatal(err)
		}
	}
}

// Packets are recognised up to Lookahead ahead of the next expected number;
// one further is not ours (ErrTooOld), costs no key work, and changes nothing.
func TestLookahead(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, &core.Config{Lookahead: 8})
	cts := send(t, is, 20)
	if _, err := rs.Decrypt(cts[8]); !errors.Is(err, core.ErrTooOld) {
		t.Fatalf("9 ahead: %v", err)
	}
	if _, err := rs.Decrypt(cts[7]); err != nil {
		t.Fatalf("8 ahead (the last recognised): %v", err)
	}
	for i := 8; i < 16; i++ { // the window moved on
		if _, err := rs.Decrypt(cts[i]); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := rs.Decrypt(cts[3]); err != nil {
		t.Fatalf("late message 3: %v", err)
	}
}

// Hints differ per message and per direction, so an observer cannot link
// two packets of one session by them.
func TestHintsUnlinkable(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, nil)
	seen := map[uint32]bool{}
	for _, s := range []*core.Session{is, rs} {
		for range 200 {
			ct, _ := s.Encrypt(nil)
			h, _ := core.Hint(ct)
			if seen[h] {
				t.Fatal("a hint repeats")
			}
			seen[h] = true
		}
	}
}

func TestClosedSession(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, nil)
	ct, _ := is.Encrypt(nil)
	rs.Close()
	rs.Close()
	if _, err := rs.Decrypt(ct); !errors.Is(err, core.ErrState) {
		t.Fatal(err)
	}
}

// Wire budgets from the issue: printed and asserted.
func TestPacketSizes(t *testing.T) {
	budgets := map[keystore.Suite][2]int{keystore.X25519: {97, 53}, keystore.P256: {99, 54}}
	for _, s := range suites {
		a, b := mustIdentity(t), mustIdentity(t)
		in, m1, _ := core.Initiate(a, dhPub(t, b, s), nil, nil)
		_, _, m2, err := core.NewResponder(b, nil).Respond(m1, nil)
		if err != nil {
			t.Fatal(err)
		}
		is, _, err := in.Finish(m2)
		if err != nil {
			t.Fatal(err)
		}
		var over []int
		for _, n := range []int{0, 1, 6, 100, 200, 233} {
			ct, _ := is.Encrypt(make([]byte, n))
			over = append(over, len(ct)-n)
		}
		t.Logf("%v: init %d bytes, response %d, transport overhead %v for payloads 0,1,6,100,200,233", s, len(m1), len(m2), over)
		if len(m1) > budgets[s][0] || len(m2) > budgets[s][1] {
			t.Errorf("%v handshake over budget: %d, %d", s, len(m1), len(m2))
		}
		for _, o := range over {
			if o != 21 {
				t.Errorf("%v transport overhead %d, want 21", s, o)
			}
		}
		is.Close()
	}
}

// 10,000 idle sessions fit in the slab's locked memory well within 8 MiB.
func TestTenThousandSessionsLockedMemory(t *testing.T) {
	a, b := newP256Identity(), newP256Identity()
	is, rs := handshake(t, a, b, keystore.P256, nil)
	is.Close()
	rs.Close()
	before, _ := core.LockedMemory()
	var ss []*core.Session
	for range 5000 {
		x, y := handshake(t, a, b, keystore.P256, nil)
		ss = append(ss, x, y)
	}
	locked, inUse := core.LockedMemory()
	t.Logf("10,000 sessions: %d bytes locked by the slab (%d in use)", locked-before, inUse)
	if locked > 8<<20 {
		t.Fatalf("slab locked %d bytes", locked)
	}
	for _, s := range ss {
		s.Close()
	}
}

// The largest payloads each packet can carry round trip; one byte more is
// refused by the sender with ErrMalformed, never by the receiver.
func TestLargestPayloads(t *testing.T) {
	for _, s := range suites {
		a, b := mustIdentity(t), mustIdentity(t)
		n := s.PublicKeySize()
		if _, _, err := core.Initiate(a, dhPub(t, b, s), make([]byte, 65535-2*n-32+1), nil); !errors.Is(err, core.ErrMalformed) {
			t.Fatalf("oversized message 1: %v", err)
		}
		in, m1, err := core.Initiate(a, dhPub(t, b, s), make([]byte, 65535-2*n-32), nil)
		if err != nil {
			t.Fatal(err)
		}
		r := core.NewResponder(b, nil)
		if _, _, _, err := r.Respond(m1, make([]byte, 65535-n-16+1)); !errors.Is(err, core.ErrMalformed) {
			t.Fatalf("oversized reply: %v", err)
		}
		rs, _, m2, err := r.Respond(m1, make([]byte, 65535-n-16))
		if err != nil {
			t.Fatalf("largest message 1 refused: %v", err)
		}
		is, _, err := in.Finish(m2)
		if err != nil {
			t.Fatalf("largest message 2 refused: %v", err)
		}
		if _, err := is.Encrypt(make([]byte, core.MaxPlaintext+1)); !errors.Is(err, core.ErrMalformed) {
			t.Fatal("oversized transport accepted")
		}
		ct, _ := is.Encrypt(make([]byte, core.MaxPlaintext))
		if _, err := rs.Decrypt(ct); err != nil {
			t.Fatalf("largest transport refused: %v", err)
		}
		is.Close()
		rs.Close()
	}
}

// A forged packet far ahead costs HMACs, never locked memory.
func TestForgedAheadAllocatesNothing(t *testing.T) {
	is, rs := handshake(t, mustIdentity(t), mustIdentity(t), keystore.X25519, &core.Config{Lookahead: 64})
	cts := send(t, is, 60)
	_, before := core.LockedMemory()
	bad := bytes.Clone(cts[59])
	bad[len(bad)-1] ^= 1
	if _, err := rs.Decrypt(bad); !errors.Is(err, core.ErrAuth) {
		t.Fatal(err)
	}
	if _, after := core.LockedMemory(); after != before {
		t.Fatalf("forged packet left %d bytes of locked memory in use", after-before)
	}
	if _, err := rs.Decrypt(cts[59]); err != nil {
		t.Fatal(err)
	}
	if _, after := core.LockedMemory(); after != before+59*32 {
		t.Fatalf("59 skipped keys should hold %d bytes, hold %d", 59*32, after-before)
	}
}

// Sessions and handshakes dropped without Close give their locked slots back
// once collected (a lost message 2 must not leak locked memory).
func TestDroppedObjectsFreeLockedMemory(t *testing.T) {
	a, b := mustIdentity(t), mustIdentity(t)
	runtime.GC()
	_, before := core.LockedMemory()
	func() {
		for range 50 {
			core.Initiate(a, dhPub(t, b, keystore.X25519), nil, nil)
			in, m1, _ := core.Initiate(a, dhPub(t, b, keystore.X25519), nil, nil)
			_, _, m2, _ := core.NewResponder(b, nil).Respond(m1, nil)
			in.Finish(m2)
		}
	}()
	for range 100 {
		runtime.GC()
		if _, now := core.LockedMemory(); now == before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, now := core.LockedMemory()
	t.Fatalf("%d bytes of locked memory still held by dropped objects", now-before)
}

// The sizes core computes before acting (InitSize, ResponseSize,
// EncryptedSize, PayloadSize) are the sizes of the packets it produces, at
// every framing boundary.
func TestSizesMatchPackets(t *testing.T) {
	a, b := mustIdentity(t), mustIdentity(t)
	for _, s := range suites {
		k := dhPub(t, b, s)
		for _, n := range []int{0, 1, 5, 6, 7, 23, 24, 100, 200, 205, 206, 207, 237, 238, 239, 240, 1000,
			core.MaxInitPayload(s), core.MaxReplyPayload(s), core.MaxPlaintext} {
			pl := make([]byte, n)
			n1 := min(n, core.MaxInitPayload(s))
			in, m1, err := core.Initiate(a, k, pl[:n1], nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := core.PayloadSize(m1, 0); core.InitSize(s, n1) != len(m1) || !ok || got != n1 {
				t.Fatalf("%v msg1 of %d: InitSize %d, PayloadSize %d, packet %d", s, n1, core.InitSize(s, n1), got, len(m1))
			}
			n2 := min(n, core.MaxReplyPayload(s))
			sess, _, m2, err := core.NewResponder(b, nil).Respond(m1, pl[:n2])
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := core.PayloadSize(m2, s); core.ResponseSize(s, n2) != len(m2) || !ok || got != n2 {
				t.Fatalf("%v msg2 of %d: ResponseSize %d, PayloadSize %d, packet %d", s, n2, core.ResponseSize(s, n2), got, len(m2))
			}
			n3 := min(n, core.MaxPlaintext)
			p, err := sess.Encrypt(pl[:n3])
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := core.PayloadSize(p, s); core.EncryptedSize(n3) != len(p) || !ok || got != n3 {
				t.Fatalf("transport of %d: EncryptedSize %d, PayloadSize %d, packet %d", n3, core.EncryptedSize(n3), got, len(p))
			}
			sess.Close()
			in.Close()
		}
	}
}
