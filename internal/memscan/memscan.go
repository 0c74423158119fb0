// Package memscan is for custody tests: a child process uses an identity
// and closes everything, and its parent reads the child's whole memory
// (/proc/PID/maps and /proc/PID/mem) looking for secrets it can compute on
// its own. It also holds the handshake both sides of such a test agree on:
// ephemeral keys from a deterministic stream the parent knows, so that the
// parent can recompute every DH output and the session keys (with
// github.com/flynn/noise, the independent implementation) from the
// transcript the child reports.
//
// Never linked into the library.
package memscan

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/flynn/noise"
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/noisetest"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// Scan reads every readable mapping of process pid and counts, per needle,
// the places where the needle or either of its 16-byte halves occurs (a
// partial copy counts). Needles shorter than 16 bytes are refused: they
// would match by chance. Mappings that cannot be read ([vvar], guard pages)
// are skipped; the number of bytes read is returned so a caller can see the
// scan covered something.
func Scan(pid int, needles map[string][]byte) (hits map[string]int, scanned int64, err error) {
	for name, n := range needles {
		if len(n) < 16 {
			return nil, 0, fmt.Errorf("memscan: needle %s is %d bytes, want at least 16", name, len(n))
		}
	}
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, 0, err
	}
	defer maps.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, 0, err
	}
	defer mem.Close()
	hits = map[string]int{}
	for name := range needles {
		hits[name] = 0
	}
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start))
		buf = buf[:n]
		scanned += int64(n)
		for name, nd := range needles {
			h := len(nd) / 2
			for _, part := range [][]byte{nd, nd[:16], nd[len(nd)-16:], nd[h-8 : h+8]} {
				if c := bytes.Count(buf, part); c > 0 {
					hits[name] += c
					break
				}
			}
		}
	}
	return hits, scanned, sc.Err()
}

// Stream is a deterministic io.Reader for core.Config.Rand: block i is
// SHA-256(seed || i), each Read taking whole blocks (a Read of 32 bytes, as
// core's ephemeral keys make, is exactly one block).
type Stream struct {
	seed [32]byte
	n    uint64
}

func NewStream(seed [32]byte) *Stream { return &Stream{seed: seed} }

func (s *Stream) Read(p []byte) (int, error) {
	for off := 0; off < len(p); off += 32 {
		var in [40]byte
		copy(in[:], s.seed[:])
		binary.BigEndian.PutUint64(in[32:], s.n)
		s.n++
		b := sha256.Sum256(in[:])
		copy(p[off:], b[:])
		secret.Wipe(b[:])
	}
	return len(p), nil
}

// Prologue is what both sides of a custody handshake mix in.
var Prologue = []byte("loramesh custody test")

// Transcript is what a child reports: public bytes only.
type Transcript struct {
	Msg1, Msg2 []byte
}

// Handshake runs, in the child, a handshake from a (initiator, the identity
// under test) to b (a memory identity whose seed the parent knows) in
// suite s, with ephemeral keys from streams ra and rb, then three transport
// messages each way and a signature by a; it closes the sessions and
// returns the transcript.
func Handshake(a, b keystore.Identity, s keystore.Suite, ra, rb [32]byte) (Transcript, error) {
	var tr Transcript
	bk, err := b.DHPublic(s)
	if err != nil {
		return tr, err
	}
	in, m1, err := core.Initiate(a, bk, []byte("hello"), &core.Config{Prologue: Prologue, Rand: NewStream(ra)})
	if err != nil {
		return tr, fmt.Errorf("initiate: %w", err)
	}
	rs, _, m2, err := core.NewResponder(b, &core.Config{Prologue: Prologue, Rand: NewStream(rb)}).Respond(m1, []byte("welcome"))
	if err != nil {
		return tr, fmt.Errorf("respond: %w", err)
	}
	is, _, err := in.Finish(m2)
	if err != nil {
		return tr, fmt.Errorf("finish: %w", err)
	}
	for i := range 3 {
		c, err := is.Encrypt([]byte{'a', byte(i)})
		if err != nil {
			return tr, err
		}
		if _, err := rs.Decrypt(c); err != nil {
			return tr, err
		}
		if c, err = rs.Encrypt([]byte{'b', byte(i)}); err != nil {
			return tr, err
		}
		if _, err := is.Decrypt(c); err != nil {
			return tr, err
		}
	}
	if _, err := core.SignMessage(a, []byte("a card")); err != nil {
		return tr, fmt.Errorf("sign: %w", err)
	}
	is.Close()
	rs.Close()
	return Transcript{Msg1: m1, Msg2: m2}, nil
}

// MemorySecrets are the secrets of a memory identity's seed: the seed, both
// halves of SHA-512(seed) (the X25519 scalar and the Ed25519 nonce prefix)
// and the P-256 scalar.
func MemorySecrets(prefix string, seed []byte) map[string][]byte {
	h := sha512.Sum512(seed)
	k := p256Scalar(seed)
	return map[string][]byte{
		prefix + " seed":           bytes.Clone(seed),
		prefix + " X25519 scalar":  bytes.Clone(h[:32]),
		prefix + " Ed25519 prefix": bytes.Clone(h[32:]),
		prefix + " P-256 scalar":   k,
	}
}

// p256Scalar is keystore/memory's P-256 key derivation, written again.
func p256Scalar(seed []byte) []byte {
	n := elliptic.P256().Params().N
	for c := byte(0); c < 16; c++ {
		m := hmac.New(sha256.New, seed)
		m.Write([]byte("loramesh p256 identity v1"))
		m.Write([]byte{c})
		k := m.Sum(nil)
		if v := new(big.Int).SetBytes(k); v.Sign() > 0 && v.Cmp(n) < 0 {
			return k
		}
	}
	return nil
}

// ephemeral is core's ephemeral key from stream r.
func ephemeral(s keystore.Suite, r io.Reader) (*ecdh.PrivateKey, error) {
	var p [32]byte
	if s == keystore.X25519 {
		r.Read(p[:])
		return ecdh.X25519().NewPrivateKey(p[:])
	}
	for range 8 {
		r.Read(p[:])
		if k, err := ecdh.P256().NewPrivateKey(p[:]); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("memscan: no P-256 scalar in the stream")
}

// fixedDH is a noise.DHFunc whose GenerateKeypair returns key.
type fixedDH struct {
	noise.DHFunc
	key noise.DHKey
}

func (f fixedDH) GenerateKeypair(io.Reader) (noise.DHKey, error) { return f.key, nil }

// noiseBody returns the Noise message inside a handshake packet
// (docs/PROTOCOL.md §1: kind byte, then for a response the hint).
func noiseBody(p []byte) ([]byte, error) {
	k, err := core.PacketKind(p)
	switch {
	case err != nil:
		return nil, err
	case k == core.KindResponse && len(p) >= 1+core.HintSize:
		return p[1+core.HintSize:], nil
	case k == core.KindInitX25519 || k == core.KindInitP256:
		return p[1:], nil
	}
	return nil, fmt.Errorf("memscan: not a handshake packet (kind %#x)", byte(k))
}

// Expected recomputes, in the parent, the handshake the child ran: the four
// DH outputs (es, ss, ee, se) and the two session keys flynn/noise derives,
// given b's seed, a's static public key and the transcript. It checks that
// flynn's message 2 equals the child's, so the numbers are the child's.
func Expected(s keystore.Suite, bSeed []byte, aPub keystore.PublicKey, ra, rb [32]byte, tr Transcript) (map[string][]byte, error) {
	curve := map[keystore.Suite]ecdh.Curve{keystore.X25519: ecdh.X25519(), keystore.P256: ecdh.P256()}[s]
	var bPriv *ecdh.PrivateKey
	var err error
	if s == keystore.X25519 {
		h := sha512.Sum512(bSeed)
		bPriv, err = curve.NewPrivateKey(h[:32])
	} else {
		bPriv, err = curve.NewPrivateKey(p256Scalar(bSeed))
	}
	if err != nil {
		return nil, err
	}
	ea, err := ephemeral(s, NewStream(ra))
	if err != nil {
		return nil, err
	}
	eb, err := ephemeral(s, NewStream(rb))
	if err != nil {
		return nil, err
	}
	ap, err := aPub.ECDH()
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	dh := func(name string, k *ecdh.PrivateKey, p *ecdh.PublicKey) error {
		z, err := k.ECDH(p)
		out[name] = z
		return err
	}
	if err := dh("DH es", bPriv, ea.PublicKey()); err != nil {
		return nil, err
	}
	if err := dh("DH ss", bPriv, ap); err != nil {
		return nil, err
	}
	if err := dh("DH ee", eb, ea.PublicKey()); err != nil {
		return nil, err
	}
	if err := dh("DH se", eb, ap); err != nil {
		return nil, err
	}
	pub := func(k *ecdh.PrivateKey) []byte {
		if s == keystore.X25519 {
			return k.PublicKey().Bytes()
		}
		x, y := elliptic.Unmarshal(elliptic.P256(), k.PublicKey().Bytes())
		return elliptic.MarshalCompressed(elliptic.P256(), x, y)
	}
	// flynn makes its ephemeral key with the suite's GenerateKeypair: the
	// suite is wrapped to hand out the child's.
	dhf := fixedDH{DHFunc: noise.DH25519, key: noise.DHKey{Private: eb.Bytes(), Public: pub(eb)}}
	if s == keystore.P256 {
		dhf.DHFunc = noisetest.P256{}
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: noise.NewCipherSuite(dhf, noise.CipherChaChaPoly, noise.HashSHA256),
		Pattern:     noise.HandshakeIK, Initiator: false, Prologue: Prologue,
		StaticKeypair: noise.DHKey{Private: bPriv.Bytes(), Public: pub(bPriv)},
	})
	if err != nil {
		return nil, err
	}
	body1, err := noiseBody(tr.Msg1)
	if err != nil {
		return nil, err
	}
	if _, _, _, err := hs.ReadMessage(nil, body1); err != nil {
		return nil, fmt.Errorf("flynn reading message 1: %w", err)
	}
	m2, c1, c2, err := hs.WriteMessage(nil, []byte("welcome"))
	if err != nil {
		return nil, err
	}
	if body2, err := noiseBody(tr.Msg2); err != nil || !bytes.Equal(body2, m2) {
		return nil, errors.New("memscan: flynn's message 2 differs from the child's: the recomputation is not the child's handshake")
	}
	k1, k2 := c1.UnsafeKey(), c2.UnsafeKey()
	out["session key i->r"], out["session key r->i"] = k1[:], k2[:]
	// Noise's ck and k after message 1 (MixKey of es, then of ss): the
	// state the initiator keeps for message 2 and copies for each one it
	// reads (symmetric.clone).
	ck := sha256.Sum256([]byte(s.String()))
	if len(s.String()) <= 32 {
		ck = [32]byte{}
		copy(ck[:], s.String())
	}
	var k []byte
	for _, ikm := range [][]byte{out["DH es"], out["DH ss"]} {
		var c1 []byte
		c1, k = hkdf2(ck[:], ikm)
		copy(ck[:], c1)
	}
	if len(tr.Msg2) < 5 || !bytes.Equal(hmacSHA256(ck[:], []byte("loramesh response hint"))[:4], tr.Msg2[1:5]) {
		return nil, errors.New("memscan: ck after message 1 does not give message 2's hint")
	}
	out["ck after message 1"], out["k after message 1"] = ck[:], k
	return out, nil
}

// hkdf2 is Noise's HKDF with SHA-256 and two outputs.
func hkdf2(ck, ikm []byte) ([]byte, []byte) {
	t := hmacSHA256(ck, ikm)
	o1 := hmacSHA256(t, []byte{1})
	return o1, hmacSHA256(t, o1, []byte{2})
}

func hmacSHA256(key []byte, data ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// Child is a custody child seen from the parent.
type Child struct {
	Pid   int
	Lines []string // what it printed before "closed"
	cmd   *exec.Cmd
	stdin io.WriteCloser
	errb  *bytes.Buffer
}

// Start runs exe (the test binary) with env, writes input (the secrets the
// child is to use) to its stdin and reads its output up to the line
// "closed", when the child has closed everything and waits.
func Start(exe string, env []string, input []byte) (*Child, error) {
	c := exec.Command(exe, "-test.run=^$")
	c.Env = append(os.Environ(), env...)
	in, err := c.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	ch := &Child{cmd: c, stdin: in, errb: new(bytes.Buffer)}
	c.Stderr = ch.errb
	if err := c.Start(); err != nil {
		return nil, err
	}
	ch.Pid = c.Process.Pid
	if _, err := in.Write(input); err != nil {
		ch.Stop()
		return nil, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if sc.Text() == "closed" {
			return ch, nil
		}
		ch.Lines = append(ch.Lines, sc.Text())
	}
	ch.Stop()
	return nil, fmt.Errorf("memscan: child ended before closing: %s %s", strings.Join(ch.Lines, "\n"), ch.errb.String())
}

// Stop lets the child exit and waits for it.
func (c *Child) Stop() error {
	c.stdin.Close()
	return c.cmd.Wait()
}

// ReadSecret reads n bytes of the child's stdin straight into locked
// memory (a read(2) into the buffer: no other copy).
func ReadSecret(n int) (*secret.Buffer, error) {
	b, err := secret.NewBuffer(make([]byte, n))
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(os.Stdin, b.Bytes()); err != nil {
		b.Free()
		return nil, err
	}
	return b, nil
}

// Park tells the parent everything is closed and waits for stdin to close.
func Park() {
	fmt.Println("closed")
	var b [1]byte
	for {
		if _, err := os.Stdin.Read(b[:]); err != nil {
			return
		}
	}
}

// Planted, set by a control child, keeps a copy of a secret reachable on
// the heap until the child exits, so the parent's scan must find it.
var Planted []byte

// RequireErasure skips a custody test in a build that cannot erase what the
// primitives leave behind (without GOEXPERIMENT=runtimesecret, or on a
// platform runtime/secret does not cover), where it would fail for that
// reason alone. make test sets LORAMESH_REQUIRE_ERASURE, which turns the
// skip into a failure on linux/amd64 and linux/arm64: CI never skips custody
// where the library claims it. On other platforms (linux/arm) there is no
// erasure to check, and lm_features says so (capi's TestFeatures and
// tests/cross check that it does).
func RequireErasure(t testing.TB) {
	if secret.Erases {
		return
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("runtime/secret erases nothing on %s/%s: no custody to check; lm_features reports erase=no", runtime.GOOS, runtime.GOARCH)
	}
	const why = "this build cannot erase the primitives' temporaries (build with GOEXPERIMENT=runtimesecret, as make test does)"
	if os.Getenv("LORAMESH_REQUIRE_ERASURE") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}
