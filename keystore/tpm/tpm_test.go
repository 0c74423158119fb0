package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	"github.com/google/go-tpm/tpm2"
	"github.com/loramesh/loramesh-core/keystore"
)

func TestSignVerifies(t *testing.T) {
	for _, auth := range []string{"", "1234"} {
		ks := simKeystore(t, auth)
		id := generate(t, ks, "signer")
		d := sha256.Sum256([]byte("contact card"))
		sig, err := id.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(id.Public().(*ecdsa.PublicKey), d[:], sig) {
			t.Fatalf("auth %q: signature does not verify", auth)
		}
		d384 := sha512.Sum384(nil)
		if _, err := id.Sign(rand.Reader, d384[:], crypto.SHA384); err == nil {
			t.Fatal("SHA-384 accepted")
		}
		if _, err := id.Sign(rand.Reader, d[:16], crypto.SHA256); err == nil {
			t.Fatal("short digest accepted")
		}
	}
}

func TestDHMatchesCryptoECDH(t *testing.T) {
	for _, auth := range []string{"", "1234"} {
		ks := simKeystore(t, auth)
		id := generate(t, ks, "dh")
		mine, err := id.DHPublic(keystore.P256)
		if err != nil {
			t.Fatal(err)
		}
		myECDH, err := mine.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			sk, peer := softPeer(t)
			want, err := sk.ECDH(myECDH)
			if err != nil {
				t.Fatal(err)
			}
			var got [32]byte
			if err := id.DH(peer, &got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:], want) {
				t.Fatalf("auth %q: TPM and crypto/ecdh disagree", auth)
			}
		}
	}
}

func TestOpCounterExact(t *testing.T) {
	ks := simKeystore(t, "")
	id := generate(t, ks, "ops")
	if n := id.PrivateKeyOps(); n != 0 {
		t.Fatalf("fresh identity: %d ops", n)
	}
	_, peer := softPeer(t)
	var z [32]byte
	d := sha256.Sum256(nil)
	for range 3 {
		if err := id.DH(peer, &z); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := id.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	// Refused before reaching the TPM: not counted.
	id.Sign(nil, d[:], crypto.SHA512)
	id.DH(keystore.PublicKey{}, &z)
	id.DHPublic(keystore.X25519)
	if n := id.PrivateKeyOps(); n != 4 {
		t.Fatalf("ops = %d, want 4", n)
	}
}

func TestOnlyP256(t *testing.T) {
	ks := simKeystore(t, "")
	if _, err := ks.Generate("x", keystore.X25519); !errors.Is(err, keystore.ErrUnsupportedSuite) {
		t.Fatalf("Generate(X25519): %v", err)
	}
	id := generate(t, ks, "p")
	if _, err := id.DHPublic(keystore.X25519); !errors.Is(err, keystore.ErrUnsupportedSuite) {
		t.Fatalf("DHPublic(X25519): %v", err)
	}
	peer, err := keystore.ParsePublicKey(keystore.X25519, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	var z [32]byte
	if err := id.DH(peer, &z); !errors.Is(err, keystore.ErrUnsupportedSuite) {
		t.Fatalf("DH(X25519 peer): %v", err)
	}
	if got := id.Suites(); len(got) != 1 || got[0] != keystore.P256 {
		t.Fatalf("Suites = %v", got)
	}
}

func TestFilesAndLifecycle(t *testing.T) {
	ks := simKeystore(t, "pin")
	id := generate(t, ks, "node-1")
	want, _ := id.DHPublic(keystore.P256)
	if _, err := ks.Generate("node-1"); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second Generate: %v", err)
	}
	if _, err := ks.Generate("../evil"); err == nil {
		t.Fatal("path name accepted")
	}
	path := filepath.Join(ks.cfg.Dir, "node-1.pem")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	b, _ := os.ReadFile(path)
	k, err := keyfile.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	der := keyfile.Marshal(k) // without emptyAuth, as go-tpm-keyfiles writes it
	if k.EmptyAuth || k.Description != "" || bytes.Equal(der, pemDER(t, b)) ||
		!bytes.Contains(pemDER(t, b), []byte{0xa0, 0x03, 0x01, 0x01, 0x00}) {
		t.Fatal("key file must carry emptyAuth FALSE and no description")
	}
	if err := id.Close(); err != nil {
		t.Fatal(err)
	}
	var z [32]byte
	_, peer := softPeer(t)
	if err := id.DH(peer, &z); !errors.Is(err, keystore.ErrClosed) {
		t.Fatalf("DH after Close: %v", err)
	}
	id2, err := ks.Open("node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer id2.Close()
	if got, _ := id2.DHPublic(keystore.P256); !got.Equal(want) {
		t.Fatal("reopened key has another public key")
	}
	if err := id2.DH(peer, &z); err != nil {
		t.Fatal(err)
	}
	if names, err := ks.List(); err != nil || len(names) != 1 || names[0] != "node-1" {
		t.Fatalf("List = %v, %v", names, err)
	}
	if o, err := ks.Open("absent"); !errors.Is(err, keystore.ErrNotFound) || o != nil {
		t.Fatalf("Open(absent): %v, %#v", err, o)
	}
	var nilID *Identity
	nilID.Close()
	if err := ks.Delete("node-1"); err != nil {
		t.Fatal(err)
	}
	if err := ks.Delete("node-1"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	// An open identity outlives its keystore.
	ks.Close()
	if err := id2.DH(peer, &z); err != nil {
		t.Fatalf("DH after keystore Close: %v", err)
	}
	if _, err := ks.Open("node-1"); !errors.Is(err, keystore.ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
}

func TestNoAuthKeyFile(t *testing.T) {
	ks := simKeystore(t, "")
	generate(t, ks, "open")
	b, _ := os.ReadFile(filepath.Join(ks.cfg.Dir, "open.pem"))
	k, err := keyfile.Decode(b)
	if err != nil || !k.EmptyAuth {
		t.Fatalf("key without auth must say emptyAuth TRUE: %v", err)
	}
	p, _ := k.Pubkey.Contents()
	if !p.ObjectAttributes.NoDA {
		t.Fatal("key without auth should be noDA")
	}
}

// A blob made under another parent (go-tpm's ECCSRKTemplate, a different
// SRK, as on another TPM) must fail with ErrBadBlob at Open.
func TestForeignBlob(t *testing.T) {
	ks := simKeystore(t, "")
	var pub tpm2.TPM2BPublic
	var priv tpm2.TPM2BPrivate
	err := ks.d.do(func() error {
		p, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(ks.d.t)
		if err != nil {
			return err
		}
		defer ks.d.flush(p.ObjectHandle)
		c, err := tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: p.ObjectHandle, Name: p.Name, Auth: tpm2.PasswordAuth(nil)},
			InPublic:     tpm2.New2B(identityTemplate(false)),
		}.Execute(ks.d.t)
		if err != nil {
			return err
		}
		pub, priv = c.OutPublic, c.OutPrivate
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	kf, _ := encodeKey(pub, priv, false)
	os.WriteFile(filepath.Join(ks.cfg.Dir, "foreign.pem"), kf, 0o600)
	_, err = ks.Open("foreign")
	if !errors.Is(err, ErrBadBlob) || !errors.Is(err, tpm2.TPMRCIntegrity) || !errors.Is(err, keystore.ErrKeystore) {
		t.Fatalf("foreign blob: %v", err)
	}
	os.WriteFile(filepath.Join(ks.cfg.Dir, "junk.pem"), []byte("junk"), 0o600)
	if _, err = ks.Open("junk"); !errors.Is(err, ErrBadBlob) {
		t.Fatalf("junk file: %v", err)
	}
}

// A wrong auth value fails at Open (not at the first handshake message a
// stranger sends), with the tries left; the same value is never sent to the
// TPM again; the right one opens.
func TestWrongAuthSim(t *testing.T) {
	defer resetDA(t, shared{})
	resetDA(t, shared{})
	ks := simKeystore(t, "right")
	generate(t, ks, "k").Close()
	var told []string
	ks.cfg.Auth = pin("wrong")
	ks.cfg.AuthFailed = func(n string) { told = append(told, n) }
	id, err := ks.Open("k")
	var ae *AuthError
	if !errors.Is(err, keystore.ErrWrongPIN) || !errors.As(err, &ae) || !ae.Known || ae.Max != 3 || ae.Left != 2 || id != nil {
		t.Fatalf("wrong auth at open: %v (identity %v)", err, id)
	}
	if !strings.Contains(err.Error(), "2 of 3 tries left") || !strings.Contains(err.Error(), "tpm2_dictionarylockout -c") {
		t.Fatalf("error does not say the tries left and how to reset: %v", err)
	}
	if len(told) != 1 || told[0] != "k" {
		t.Fatalf("AuthFailed told %v", told)
	}
	c0, _, _, _ := ks.d.daState()
	// The same value again: refused here, the TPM never sees it.
	for range 3 {
		if _, err := ks.Open("k"); !errors.As(err, &ae) || !ae.NotResent || !errors.Is(err, keystore.ErrWrongPIN) {
			t.Fatalf("wrong value offered again: %v", err)
		}
	}
	if c1, _, _, _ := ks.d.daState(); c1 != c0 {
		t.Fatalf("a value that failed reached the TPM again: counter %d -> %d", c0, c1)
	}
	ks.cfg.Auth = pin("right")
	id, err = ks.Open("k")
	if err != nil {
		t.Fatalf("right auth after a wrong one: %v", err)
	}
	defer id.Close()
	var z [32]byte
	_, peer := softPeer(t)
	if err := id.DH(peer, &z); err != nil {
		t.Fatal(err)
	}
	// Close on whatever a failed Open returned is safe (a nil interface).
	ks.cfg.Auth = pin("wrong")
	bad, err := ks.Open("k")
	if err == nil || bad != nil {
		t.Fatalf("failed open returned %v, %v", bad, err)
	}
}

func TestNoLeakedHandles(t *testing.T) {
	ks := simKeystore(t, "1234")
	id := generate(t, ks, "k")
	_, peer := softPeer(t)
	var z [32]byte
	d := sha256.Sum256(nil)
	for range 5 {
		id.DH(peer, &z)
		id.Sign(nil, d[:], crypto.SHA256)
	}
	if hs := transients(t, shared{}); len(hs) != 0 {
		t.Fatalf("transient handles left: %v", hs)
	}
}

func TestConcurrentUse(t *testing.T) {
	ks := simKeystore(t, "1234")
	a, b := generate(t, ks, "a"), generate(t, ks, "b")
	bp, _ := b.DHPublic(keystore.P256)
	ap, _ := a.DHPublic(keystore.P256)
	var wg sync.WaitGroup
	errs := make(chan error, 8*5*3) // room for every failure: a full channel would hang wg.Wait
	for i := range 8 {
		wg.Go(func() {
			for range 5 {
				var z1, z2 [32]byte
				if i%2 == 0 {
					d := sha256.Sum256([]byte{byte(i)})
					if sig, err := a.Sign(nil, d[:], crypto.SHA256); err != nil || !ecdsa.VerifyASN1(a.ecPub, d[:], sig) {
						errs <- err
					}
					continue
				}
				if err := a.DH(bp, &z1); err != nil {
					errs <- err
				}
				if err := b.DH(ap, &z2); err != nil {
					errs <- err
				}
				if z1 != z2 {
					errs <- errors.New("a·B != b·A")
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Two identities that each sign and derive fit the simulator's three
// session slots (with a ZGen and a signing session each they did not): only
// the ZGen session stays loaded, signing uses a one-shot session.
func TestSessionSlots(t *testing.T) {
	ks := simKeystore(t, "1234")
	ids := []*Identity{generate(t, ks, "s1"), generate(t, ks, "s2")}
	peer, _ := ids[0].DHPublic(keystore.P256)
	for round := range 2 {
		for i, id := range ids {
			var z [32]byte
			if err := id.DH(peer, &z); err != nil {
				t.Fatalf("round %d identity %d DH: %v", round, i, err)
			}
			d := sha256.Sum256([]byte{byte(i)})
			if sig, err := id.Sign(nil, d[:], crypto.SHA256); err != nil || !ecdsa.VerifyASN1(id.ecPub, d[:], sig) {
				t.Fatalf("round %d identity %d Sign: %v", round, i, err)
			}
		}
	}
}

func TestMissingDevice(t *testing.T) {
	_, err := OpenDevice(filepath.Join(t.TempDir(), "tpmrm0"), Config{Dir: t.TempDir()})
	if !errors.Is(err, ErrNoDevice) || !errors.Is(err, keystore.ErrKeystore) {
		t.Fatalf("missing device: %v", err)
	}
	_, err = OpenSwtpmUnix(filepath.Join(t.TempDir(), "sock"), Config{Dir: t.TempDir()})
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("missing socket: %v", err)
	}
}

func pemDER(t testing.TB, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	return blk.Bytes
}

// sniffer records every command and response, like a probe on the TPM bus.
type sniffer struct {
	shared
	mu  sync.Mutex
	cmd [][]byte
	rsp [][]byte
}

func (s *sniffer) Send(c []byte) ([]byte, error) {
	// Copy first: the simulator decrypts parameters in place in c.
	sent := bytes.Clone(c)
	r, err := s.shared.Send(c)
	s.mu.Lock()
	s.cmd = append(s.cmd, sent)
	s.rsp = append(s.rsp, bytes.Clone(r))
	s.mu.Unlock()
	return r, err
}

func (s *sniffer) saw(secret []byte) bool {
	for _, b := range append(s.cmd, s.rsp...) {
		if bytes.Contains(b, secret) {
			return true
		}
	}
	return false
}

// Neither the auth value (at Create, Sign and ZGen) nor the shared secret
// crosses the bus in the clear.
func TestBusCarriesNoSecret(t *testing.T) {
	const auth = "secret-pin-0123456789"
	bus := &sniffer{shared: shared{}}
	ks, err := OpenTransport(bus, Config{Dir: t.TempDir(), Auth: pin(auth)})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	id := generate(t, ks, "k")
	d := sha256.Sum256(nil)
	if _, err := id.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	_, peer := softPeer(t)
	var z [32]byte
	if err := id.DH(peer, &z); err != nil {
		t.Fatal(err)
	}
	if bus.saw([]byte(auth)) {
		t.Fatal("auth value seen on the bus")
	}
	if bus.saw(z[:16]) {
		t.Fatal("shared secret seen on the bus")
	}
	// Control: the same ZGen with a plain password session shows Z.
	err = ks.d.do(func() error {
		h, err := id.load()
		if err != nil {
			return err
		}
		defer ks.d.flush(h.Handle)
		p, _ := peer.ECDH()
		u := p.Bytes()
		_, err = tpm2.ECDHZGen{
			KeyHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth([]byte(auth))},
			InPoint:   tpm2.New2B(tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: u[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: u[33:]}}),
		}.Execute(ks.d.t)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bus.saw(z[:16]) || !bus.saw([]byte(auth)) {
		t.Fatal("sniffer misses a plaintext ZGen: test is broken")
	}
}

// warnTPM answers the first n commands with rc, then passes through.
type warnTPM struct {
	shared
	rc   uint32
	n    int
	sent int
}

func (w *warnTPM) Send(c []byte) ([]byte, error) {
	w.sent++
	if w.n > 0 {
		w.n--
		return []byte{0x80, 0x01, 0, 0, 0, 10, byte(w.rc >> 24), byte(w.rc >> 16), byte(w.rc >> 8), byte(w.rc)}, nil
	}
	return w.shared.Send(c)
}

func TestRetryBounded(t *testing.T) {
	for _, rc := range []uint32{0x922, 0x908, 0x90a} { // RETRY, YIELDED, TESTING
		w := &warnTPM{shared: shared{}, rc: rc, n: 3}
		if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(retrying{w}); err != nil || w.sent != 4 {
			t.Fatalf("rc %#x: %v after %d sends", rc, err, w.sent)
		}
	}
	w := &warnTPM{shared: shared{}, rc: 0x922, n: 1 << 30}
	_, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(retrying{w})
	if !errors.Is(err, tpm2.TPMRCRetry) || w.sent != maxRetries+1 {
		t.Fatalf("endless RETRY: %v after %d sends", err, w.sent)
	}
}

// A transient object left behind (a crashed client on swtpm) is flushed
// when a keystore opens.
func TestOpenFlushesLeftovers(t *testing.T) {
	tp := shared{}
	if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}).Execute(tp); err != nil {
		t.Fatal(err)
	}
	if len(transients(t, tp)) == 0 {
		t.Fatal("setup: no leftover")
	}
	simKeystore(t, "")
	if hs := transients(t, tp); len(hs) != 0 {
		t.Fatalf("leftovers after open: %v", hs)
	}
}

// noP256 is a TPM whose ECC curve list lacks P-256 (only P-384).
type noP256 struct{ shared }

func (n noP256) Send(c []byte) ([]byte, error) {
	// TPM2_GetCapability (0x17a) of TPM_CAP_ECC_CURVES (8).
	if len(c) >= 14 && c[8] == 0x01 && c[9] == 0x7a && c[13] == 8 {
		return []byte{0x80, 0x01, 0, 0, 0, 21, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 4}, nil
	}
	return n.shared.Send(c)
}

func TestNoP256(t *testing.T) {
	_, err := OpenTransport(noP256{shared{}}, Config{Dir: t.TempDir()})
	if !errors.Is(err, ErrNoP256) || !errors.Is(err, keystore.ErrKeystore) {
		t.Fatalf("TPM without P-256: %v", err)
	}
}

// Trailing zero octets are dropped as the TPM drops them; a zero byte
// inside is refused before a key is made with it (such keys could never be
// used through go-tpm).
func TestAuthZeroBytes(t *testing.T) {
	ks := simKeystore(t, "abcd\x00\x00")
	id := generate(t, ks, "trail")
	id.Close()
	ks.cfg.Auth = pin("abcd")
	o, err := ks.Open("trail")
	if err != nil {
		t.Fatalf("trailing zeros: %v", err)
	}
	o.Close()
	ks.cfg.Auth = pin("ab\x00cd")
	if _, err := ks.Generate("inner"); !errors.Is(err, keystore.ErrKeystore) || !strings.Contains(err.Error(), "zero byte") {
		t.Fatalf("interior zero: %v", err)
	}
}
