package core_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"io"
	"testing"

	"github.com/flynn/noise"
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/noisetest"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

var suites = []keystore.Suite{keystore.X25519, keystore.P256}

func mustIdentity(t testing.TB) *memory.Identity {
	t.Helper()
	id, err := memory.Generate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	return id
}

func dhPub(t testing.TB, id keystore.Identity, s keystore.Suite) keystore.PublicKey {
	t.Helper()
	k, err := id.DHPublic(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// handshake runs a full handshake and returns both sessions.
func handshake(t testing.TB, a, b keystore.Identity, s keystore.Suite, cfg *core.Config) (*core.Session, *core.Session) {
	t.Helper()
	in, m1, err := core.Initiate(a, dhPub(t, b, s), []byte("hello"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := core.NewResponder(b, cfg)
	rs, p1, m2, err := r.Respond(m1, []byte("welcome"))
	if err != nil {
		t.Fatal(err)
	}
	is, p2, err := in.Finish(m2)
	if err != nil {
		t.Fatal(err)
	}
	if string(p1) != "hello" || string(p2) != "welcome" {
		t.Fatalf("payloads %q %q", p1, p2)
	}
	if !rs.Peer().Equal(dhPub(t, a, s)) || !is.Peer().Equal(dhPub(t, b, s)) {
		t.Fatal("peer keys differ from the static keys")
	}
	if is.HandshakeHash() != rs.HandshakeHash() {
		t.Fatal("handshake hashes differ")
	}
	t.Cleanup(func() { is.Close(); rs.Close() })
	return is, rs
}

func TestHandshakeAndTransport(t *testing.T) {
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			is, rs := handshake(t, mustIdentity(t), mustIdentity(t), s, nil)
			for i := 0; i < 5; i++ {
				for _, dir := range [][2]*core.Session{{is, rs}, {rs, is}} {
					msg := bytes.Repeat([]byte{byte(i)}, i*10)
					ct, err := dir[0].Encrypt(msg)
					if err != nil {
						t.Fatal(err)
					}
					pt, err := dir[1].Decrypt(ct)
					if err != nil || !bytes.Equal(pt, msg) {
						t.Fatalf("round trip %d: %v", i, err)
					}
				}
			}
		})
	}
}

// fixedReader yields the same bytes to both implementations.
func fixedReader(seed byte) io.Reader {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return bytes.NewReader(b)
}

func flynnSuite(s keystore.Suite) noise.CipherSuite { return noisetest.Suite(s) }

// flynnStatic returns a flynn keypair for a fresh software static key.
func flynnStatic(t *testing.T, s keystore.Suite) noise.DHKey {
	k, err := flynnSuite(s).GenerateKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestInteropFlynnInitiator(t *testing.T) {
	prologue := []byte("loramesh test prologue")
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			resp := mustIdentity(t)
			fs := flynnStatic(t, s)
			hs, err := noise.NewHandshakeState(noise.Config{
				CipherSuite: flynnSuite(s), Pattern: noise.HandshakeIK, Initiator: true,
				Prologue: prologue, StaticKeypair: fs, PeerStatic: dhPub(t, resp, s).Bytes(),
			})
			if err != nil {
				t.Fatal(err)
			}
			m1, _, _, err := hs.WriteMessage(nil, []byte("from flynn"))
			if err != nil {
				t.Fatal(err)
			}
			kind := core.KindInitX25519
			if s == keystore.P256 {
				kind = core.KindInitP256
			}
			r := core.NewResponder(resp, &core.Config{Prologue: prologue})
			sess, p1, m2, err := r.Respond(core.Frame(kind, 0, m1), []byte("from core"))
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			if string(p1) != "from flynn" || !bytes.Equal(sess.Peer().Bytes(), fs.Public) {
				t.Fatal("responder got the wrong payload or peer")
			}
			p2, c1, c2, err := hs.ReadMessage(nil, core.NoiseMessage(m2))
			if err != nil {
				t.Fatal(err)
			}
			if string(p2) != "from core" {
				t.Fatal("flynn got the wrong payload")
			}
			h := sess.HandshakeHash()
			if !bytes.Equal(hs.ChannelBinding(), h[:]) {
				t.Fatal("handshake hashes differ")
			}
			// Split keys: the initiator sends with c1.
			ct, _ := c1.Encrypt(nil, nil, []byte("transport i->r"))
			if pt, err := sess.NoiseOpen(ct); err != nil || string(pt) != "transport i->r" {
				t.Fatal("responder cannot open flynn's transport message")
			}
			if pt, err := c2.Decrypt(nil, nil, sess.NoiseSeal([]byte("transport r->i"))); err != nil || string(pt) != "transport r->i" {
				t.Fatal("flynn cannot open the responder's transport message")
			}
		})
	}
}

func TestInteropFlynnResponder(t *testing.T) {
	prologue := []byte("another prologue")
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			init := mustIdentity(t)
			fs := flynnStatic(t, s)
			rs, _ := keystore.ParsePublicKey(s, fs.Public)
			in, m1, err := core.Initiate(init, rs, []byte("from core"), &core.Config{Prologue: prologue})
			if err != nil {
				t.Fatal(err)
			}
			hs, err := noise.NewHandshakeState(noise.Config{
				CipherSuite: flynnSuite(s), Pattern: noise.HandshakeIK, Initiator: false,
				Prologue: prologue, StaticKeypair: fs,
			})
			if err != nil {
				t.Fatal(err)
			}
			p1, _, _, err := hs.ReadMessage(nil, core.NoiseMessage(m1))
			if err != nil || string(p1) != "from core" {
				t.Fatalf("flynn read message 1: %v", err)
			}
			if !bytes.Equal(hs.PeerStatic(), dhPub(t, init, s).Bytes()) {
				t.Fatal("flynn saw the wrong initiator key")
			}
			m2, c1, c2, err := hs.WriteMessage(nil, []byte("from flynn"))
			if err != nil {
				t.Fatal(err)
			}
			// The hint is not part of the Noise message: flynn cannot
			// derive it, so the genuine one is put on.
			sess, p2, err := in.Finish(core.Frame(core.KindResponse, in.ResponseHint(), m2))
			if err != nil || string(p2) != "from flynn" {
				t.Fatalf("finish: %v", err)
			}
			defer sess.Close()
			h := sess.HandshakeHash()
			if !bytes.Equal(hs.ChannelBinding(), h[:]) {
				t.Fatal("handshake hashes differ")
			}
			if pt, err := c1.Decrypt(nil, nil, sess.NoiseSeal([]byte("i->r"))); err != nil || string(pt) != "i->r" {
				t.Fatal("flynn cannot open the initiator's transport message")
			}
			ct, _ := c2.Encrypt(nil, nil, []byte("r->i"))
			if pt, err := sess.NoiseOpen(ct); err != nil || string(pt) != "r->i" {
				t.Fatal("initiator cannot open flynn's transport message")
			}
		})
	}
}

// With the same static and ephemeral keys, message 1 is byte for byte the
// one flynn/noise writes (25519: the ephemeral key is the 32 bytes read).
func TestMessage1ByteForByte(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	init, err := memory.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	defer init.Close()
	resp := mustIdentity(t)
	h := sha512.Sum512(seed)
	priv := h[:32]
	static := noise.DHKey{Private: priv, Public: init.DeriveX25519().Bytes()}
	hs, _ := noise.NewHandshakeState(noise.Config{
		CipherSuite: flynnSuite(keystore.X25519), Pattern: noise.HandshakeIK, Initiator: true,
		Prologue: []byte("p"), StaticKeypair: static, PeerStatic: dhPub(t, resp, keystore.X25519).Bytes(),
		Random: fixedReader(3),
	})
	want, _, _, err := hs.WriteMessage(nil, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := core.Initiate(init, dhPub(t, resp, keystore.X25519), []byte("payload"), &core.Config{Prologue: []byte("p"), Rand: fixedReader(3)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, core.Frame(core.KindInitX25519, 0, want)) {
		t.Fatal("message 1 differs from flynn/noise's")
	}
}

// Every byte of each handshake message, flipped, must be refused, and the
// responder and initiator must still complete with the genuine messages.
func TestHandshakeByteFlips(t *testing.T) {
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			a, b := mustIdentity(t), mustIdentity(t)
			in, m1, err := core.Initiate(a, dhPub(t, b, s), []byte("x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			r := core.NewResponder(b, nil)
			for i := range m1 {
				bad := bytes.Clone(m1)
				bad[i] ^= 0x01
				if _, _, _, err := r.Respond(bad, nil); err == nil {
					t.Fatalf("flipped byte %d of message 1 accepted", i)
				}
			}
			_, _, m2, err := r.Respond(m1, []byte("y"))
			if err != nil {
				t.Fatalf("genuine message 1 after forgeries: %v", err)
			}
			for i := range m2 {
				bad := bytes.Clone(m2)
				bad[i] ^= 0x80
				if _, _, err := in.Finish(bad); err == nil {
					t.Fatalf("flipped byte %d of message 2 accepted", i)
				}
			}
			if _, _, err := in.Finish(m2[:len(m2)-1]); err == nil {
				t.Fatal("truncated message 2 accepted")
			}
			sess, _, err := in.Finish(m2)
			if err != nil {
				t.Fatalf("genuine message 2 after forgeries: %v", err)
			}
			sess.Close()
			if _, _, err := in.Finish(m2); !errors.Is(err, core.ErrState) {
				t.Fatalf("second Finish: %v", err)
			}
		})
	}
}

func TestReplayedMessage1(t *testing.T) {
	a, b := mustIdentity(t), mustIdentity(t)
	_, m1, err := core.Initiate(a, dhPub(t, b, keystore.X25519), []byte("once"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := core.NewResponder(b, &core.Config{ReplayCache: 2})
	s, _, _, err := r.Respond(m1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, p, _, err := r.Respond(m1, nil); !errors.Is(err, core.ErrReplay) || p != nil {
		t.Fatalf("replay: %v", err)
	}
}

func TestAllowList(t *testing.T) {
	a, b, c := mustIdentity(t), mustIdentity(t), mustIdentity(t)
	r := core.NewResponder(b, nil)
	r.Allow(dhPub(t, c, keystore.X25519))
	_, m1, _ := core.Initiate(a, dhPub(t, b, keystore.X25519), nil, nil)
	if _, _, _, err := r.Respond(m1, nil); !errors.Is(err, core.ErrUnknownPeer) {
		t.Fatalf("unknown initiator: %v", err)
	}
	_, m1, _ = core.Initiate(c, dhPub(t, b, keystore.X25519), nil, nil)
	if _, _, _, err := r.Respond(m1, nil); err != nil {
		t.Fatalf("allowed initiator: %v", err)
	}
}

// Hardware-style identities: exactly two private-key DH operations per
// handshake on each side, none per transport message.
func TestPrivateKeyOpsPerHandshake(t *testing.T) {
	a, b := newP256Identity(), newP256Identity()
	is, rs := handshake(t, a, b, keystore.P256, nil)
	if a.PrivateKeyOps() != 2 || b.PrivateKeyOps() != 2 {
		t.Fatalf("ops per handshake: initiator %d, responder %d", a.PrivateKeyOps(), b.PrivateKeyOps())
	}
	for range 10 {
		ct, _ := is.Encrypt([]byte("m"))
		if _, err := rs.Decrypt(ct); err != nil {
			t.Fatal(err)
		}
	}
	if a.PrivateKeyOps() != 2 || b.PrivateKeyOps() != 2 {
		t.Fatal("transport messages used the identity key")
	}
}

func TestLowOrderAndInvalidKeys(t *testing.T) {
	a := mustIdentity(t)
	zero, _ := keystore.ParsePublicKey(keystore.X25519, make([]byte, 32))
	if _, _, err := core.Initiate(a, zero, nil, nil); !errors.Is(err, core.ErrInvalidPublicKey) {
		t.Fatalf("zero X25519 key: %v", err)
	}
	bad := append([]byte{2}, bytes.Repeat([]byte{0xff}, 32)...) // x >= p
	if _, err := keystore.ParsePublicKey(keystore.P256, bad); !errors.Is(err, keystore.ErrInvalidPublicKey) {
		t.Fatalf("non-canonical P-256 key: %v", err)
	}
	unc := append([]byte{4}, make([]byte, 32)...)
	if _, err := keystore.ParsePublicKey(keystore.P256, unc); err == nil {
		t.Fatal("bad prefix accepted")
	}
	if _, err := keystore.ParsePublicKey(keystore.P256, []byte{0}); err == nil {
		t.Fatal("point at infinity accepted")
	}
}

// One initiator, however busy, cannot push another's message 1 out of the
// replay cache.
func TestReplayCacheIsPartitionedByPeer(t *testing.T) {
	victim, attacker, b := mustIdentity(t), mustIdentity(t), mustIdentity(t)
	r := core.NewResponder(b, &core.Config{ReplayCache: 2})
	_, m1, _ := core.Initiate(victim, dhPub(t, b, keystore.X25519), []byte("pay 10"), nil)
	s, _, _, err := r.Respond(m1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range 100 {
		_, a1, _ := core.Initiate(attacker, dhPub(t, b, keystore.X25519), nil, nil)
		s, _, _, err := r.Respond(a1, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if _, p, _, err := r.Respond(m1, nil); !errors.Is(err, core.ErrReplay) || p != nil {
		t.Fatalf("victim's message 1 replayed after another peer's flood: %v", err)
	}
}

// Forged messages 2 that reach the identity's DH are bounded per handshake.
func TestForgedResponsesAreBounded(t *testing.T) {
	a, b := newP256Identity(), mustIdentity(t)
	in, m1, _ := core.Initiate(a, dhPub(t, b, keystore.P256), nil, nil)
	_, _, m2, err := core.NewResponder(b, nil).Respond(m1, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(m2)
	bad[len(bad)-1] ^= 1
	for i := 1; ; i++ {
		_, _, err := in.Finish(bad)
		if errors.Is(err, core.ErrState) {
			if i != 64 || a.PrivateKeyOps() != 1+64 {
				t.Fatalf("abandoned after %d forgeries, %d identity ops", i, a.PrivateKeyOps())
			}
			break
		}
		if i > 64 {
			t.Fatal("forged messages 2 are not bounded")
		}
	}
	if _, _, err := in.Finish(m2); !errors.Is(err, core.ErrState) {
		t.Fatalf("abandoned handshake finished: %v", err)
	}
}

func TestX25519KeysMustBeCanonical(t *testing.T) {
	p := make([]byte, 32) // 2^255 - 19, little endian
	p[0] = 0xed
	for i := 1; i < 31; i++ {
		p[i] = 0xff
	}
	p[31] = 0x7f
	pm1 := bytes.Clone(p)
	pm1[0] = 0xec
	top := make([]byte, 32)
	top[0], top[31] = 9, 0x80
	all := bytes.Repeat([]byte{0xff}, 32)
	all[31] = 0x7f
	for _, c := range []struct {
		b  []byte
		ok bool
	}{{pm1, true}, {p, false}, {all, false}, {top, false}} {
		if _, err := keystore.ParsePublicKey(keystore.X25519, c.b); (err == nil) != c.ok {
			t.Errorf("%x: got %v", c.b, err)
		}
	}
}
