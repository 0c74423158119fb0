package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/loramesh/loramesh-core/keystore"
)

func TestSuitesProbed(t *testing.T) {
	ks := openKS(t, tokA)
	// SoftHSM 2.6 passes the X25519 probe through CKM_EC_EDWARDS_KEY_PAIR_GEN.
	if got := ks.Suites(); !slices.Equal(got, []keystore.Suite{keystore.X25519, keystore.P256}) {
		t.Fatalf("suites %v, want X25519 and P-256", got)
	}
	if ks.t.suites[keystore.X25519].gen != ckmECEdwardsKeyPairGen {
		t.Fatalf("X25519 through mechanism %#x, want the SoftHSM path", ks.t.suites[keystore.X25519].gen)
	}
}

func TestGenerateOpenListDelete(t *testing.T) {
	ks := openKS(t, tokA)
	a := newIdentity(t, ks, "alice")
	newIdentity(t, ks, "bob", keystore.P256)
	if _, err := ks.Generate("alice"); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second alice: %v, want ErrExists", err)
	}
	if id, err := ks.Generate(""); !errors.Is(err, keystore.ErrInvalidName) || id != nil {
		t.Fatalf("Generate(\"\"): %v, want ErrInvalidName and no identity", err)
	}
	names, err := ks.List()
	if err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Fatalf("list = %v, %v", names, err)
	}
	o, err := ks.Open("alice")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		p1, _ := a.DHPublic(s)
		p2, err := o.DHPublic(s)
		if err != nil || !p1.Equal(p2) {
			t.Fatalf("%v key differs after reopen: %v", s, err)
		}
	}
	if !a.Public().(*ecdsa.PublicKey).Equal(o.Public()) {
		t.Fatal("signing key differs after reopen")
	}
	if err := ks.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Open("alice"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("open deleted: %v", err)
	}
	if err := a.DH(mustP256(t), new([32]byte)); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("DH with a deleted key: %v", err)
	}
	if err := ks.Delete("alice"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("delete deleted: %v", err)
	}
	if names, _ := ks.List(); !slices.Equal(names, []string{"bob"}) {
		t.Fatalf("list after delete = %v", names)
	}
}

func TestSign(t *testing.T) {
	ks := openKS(t, tokA)
	id := newIdentity(t, ks, "signer")
	d := sha256.Sum256([]byte("contact card"))
	sig, err := id.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(id.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("crypto/ecdsa rejects the token's signature")
	}
	d[0] ^= 1
	if ecdsa.VerifyASN1(id.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature verifies for another digest")
	}
	if _, err := id.Sign(rand.Reader, make([]byte, 48), crypto.SHA384); !errors.Is(err, ErrUnsupportedHash) {
		t.Fatalf("SHA-384: %v", err)
	}
	if _, err := id.Sign(rand.Reader, d[:20], crypto.SHA256); !errors.Is(err, ErrUnsupportedHash) {
		t.Fatalf("short digest: %v", err)
	}
	if id.PrivateKeyOps() != 1 { // refused requests never reach the token
		t.Fatalf("ops = %d, want 1", id.PrivateKeyOps())
	}
}

// dhCheck derives with a fresh software peer both ways and compares.
func dhCheck(t testing.TB, id keystore.Identity, s keystore.Suite) {
	t.Helper()
	curve := map[keystore.Suite]ecdh.Curve{keystore.X25519: ecdh.X25519(), keystore.P256: ecdh.P256()}[s]
	peer, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := keystore.FromECDH(peer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	var got [32]byte
	if err := id.DH(pp, &got); err != nil {
		t.Fatalf("%v DH: %v", s, err)
	}
	mine, _ := id.DHPublic(s)
	mp, err := mine.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	want, err := peer.ECDH(mp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:], want) {
		t.Fatalf("%v: token and crypto/ecdh secrets differ", s) // never print them
	}
}

func TestDH(t *testing.T) {
	ks := openKS(t, tokA)
	id := newIdentity(t, ks, "dh")
	if !slices.Equal(id.Suites(), []keystore.Suite{keystore.X25519, keystore.P256}) {
		t.Fatalf("suites %v", id.Suites())
	}
	dhCheck(t, id, keystore.P256)
	dhCheck(t, id, keystore.X25519)
	p := newIdentity(t, ks, "p256only", keystore.P256)
	if !slices.Equal(p.Suites(), []keystore.Suite{keystore.P256}) {
		t.Fatalf("P-256 only identity: suites %v", p.Suites())
	}
	dhCheck(t, p, keystore.P256)
	if id.PrivateKeyOps() != 2 || p.PrivateKeyOps() != 1 {
		t.Fatalf("ops = %d, %d, want 2, 1", id.PrivateKeyOps(), p.PrivateKeyOps())
	}
}

// Two identities on one token, one on another token, all at once; then
// token identity to token identity.
func TestTwoIdentitiesTwoTokens(t *testing.T) {
	ka, kb := openKS(t, tokA), openKS(t, tokB)
	a1, a2 := newIdentity(t, ka, "one"), newIdentity(t, ka, "two")
	b := newIdentity(t, kb, "one") // same name, other token
	if names, _ := kb.List(); !slices.Equal(names, []string{"one"}) {
		t.Fatalf("token B lists %v", names)
	}
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		var secrets [3][32]byte
		pairs := []struct{ x, y *Identity }{{a1, a2}, {a1, b}, {a2, b}}
		for i, p := range pairs {
			var xy, yx [32]byte
			py, _ := p.y.DHPublic(s)
			px, _ := p.x.DHPublic(s)
			if err := p.x.DH(py, &xy); err != nil {
				t.Fatal(err)
			}
			if err := p.y.DH(px, &yx); err != nil {
				t.Fatal(err)
			}
			if xy != yx {
				t.Fatalf("%v pair %d: secrets differ", s, i)
			}
			secrets[i] = xy
		}
		if secrets[0] == secrets[1] || secrets[1] == secrets[2] {
			t.Fatalf("%v: identities share a key", s)
		}
	}
}

func TestConcurrent(t *testing.T) {
	ks := openKS(t, tokA)
	id := newIdentity(t, ks, "busy")
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	pp, _ := keystore.FromECDH(peer.PublicKey())
	mine, _ := id.DHPublic(keystore.P256)
	mp, _ := mine.ECDH()
	want, _ := peer.ECDH(mp)
	xpeer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	xp, _ := keystore.FromECDH(xpeer.PublicKey())
	xmine, _ := id.DHPublic(keystore.X25519)
	xm, _ := xmine.ECDH()
	xwant, _ := xpeer.ECDH(xm)
	d := sha256.Sum256([]byte("busy"))

	const workers, rounds = 16, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for range rounds {
				var z [32]byte
				peer, want := pp, want
				if w%2 == 1 {
					peer, want = xp, xwant
				}
				if err := id.DH(peer, &z); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(z[:], want) {
					errs <- errors.New("wrong secret under load")
					return
				}
				sig, err := id.Sign(nil, d[:], crypto.SHA256)
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(id.Public().(*ecdsa.PublicKey), d[:], sig) {
					errs <- errors.New("bad signature under load")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := id.PrivateKeyOps(); got != 2*workers*rounds {
		t.Fatalf("ops = %d, want %d", got, 2*workers*rounds)
	}
	if n := len(ks.t.idle); n > maxSessions {
		t.Fatalf("%d pooled sessions, bound is %d", n, maxSessions)
	}
}

func TestReopenAfterClose(t *testing.T) {
	for range 2 {
		ks, err := OpenURI(tokB.URI(), tokB.PIN)
		if err != nil {
			t.Fatal(err)
		}
		id, err := ks.Generate("phoenix", keystore.P256)
		if err != nil {
			t.Fatal(err)
		}
		ks.Close() // the identity keeps the token open
		dhCheck(t, id, keystore.P256)
		id.Close()
		registry.Lock()
		n := len(registry.modules)
		registry.Unlock()
		if n != 0 {
			t.Fatal("module still loaded after the last close")
		}
		ks, err = OpenURI(tokB.URI(), tokB.PIN)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		o, err := ks.Open("phoenix")
		if err != nil {
			t.Fatal(err)
		}
		dhCheck(t, o, keystore.P256)
		o.Close()
		if err := ks.Delete("phoenix"); err != nil {
			t.Fatal(err)
		}
		ks.Close()
		if _, err := ks.List(); !errors.Is(err, keystore.ErrClosed) {
			t.Fatalf("list after close: %v", err)
		}
		if err := o.DH(mustP256(t), new([32]byte)); !errors.Is(err, keystore.ErrClosed) {
			t.Fatalf("DH after close: %v", err)
		}
	}
}

func mustP256(t testing.TB) keystore.PublicKey {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	p, err := keystore.FromECDH(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
