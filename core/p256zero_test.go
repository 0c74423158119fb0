package core_test

import (
	"bytes"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"math/big"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// xZeroPeer returns the P-256 point k^-1 · (0, y0): k times it is (0, y0),
// a valid point whose x-coordinate, the DH output, is 0 (b is a square mod
// p, so x = 0 is on the curve).
func xZeroPeer(t *testing.T, k []byte) keystore.PublicKey {
	t.Helper()
	c := elliptic.P256().Params()
	y0 := new(big.Int).Exp(c.B, new(big.Int).Rsh(new(big.Int).Add(c.P, big.NewInt(1)), 2), c.P)
	if new(big.Int).Exp(y0, big.NewInt(2), c.P).Cmp(c.B) != 0 {
		t.Fatal("no point with x = 0")
	}
	inv := new(big.Int).ModInverse(new(big.Int).SetBytes(k), c.N)
	x, y := elliptic.P256().ScalarMult(big.NewInt(0), y0, inv.FillBytes(make([]byte, 32)))
	pub, err := keystore.ParsePublicKey(keystore.P256, elliptic.MarshalCompressed(elliptic.P256(), x, y))
	if err != nil {
		t.Fatalf("the peer point is valid, and must parse: %v", err)
	}
	return pub
}

// Issue 11 #13, as docs/PROTOCOL.md §2 states it: a P-256 DH whose shared
// point has x = 0 (a valid point, not the point at infinity) is refused as a
// zero DH output, by the core's ephemeral DH (initiator, es), by the core's
// check of identity DH results (responder, es, with a key holder that does
// not check), and by the memory keystore's P-256 DH.
func TestP256SharedXZero(t *testing.T) {
	// Initiator: its ephemeral key is the 32 bytes read from Rand.
	k := bytes.Repeat([]byte{7}, 32)
	a := mustIdentity(t)
	_, _, err := core.Initiate(a, xZeroPeer(t, k), nil, &core.Config{Rand: bytes.NewReader(k)})
	if !errors.Is(err, core.ErrInvalidPublicKey) {
		t.Fatalf("initiator: es with x = 0: %v", err)
	}
	// Responder: message 1 whose e makes es = (0, y0) for its static key.
	b := newP256Identity()
	m1 := append([]byte{byte(core.KindInitP256)}, xZeroPeer(t, b.priv.D.FillBytes(make([]byte, 32))).Bytes()...)
	m1 = append(m1, make([]byte, 49+16)...)
	if _, _, out, err := core.NewResponder(b, nil).Respond(m1, nil); !errors.Is(err, core.ErrInvalidPublicKey) || out != nil {
		t.Fatalf("responder: es with x = 0: %v", err)
	}
	// Memory keystore: its P-256 key is derived from the seed as
	// docs/PROTOCOL.md §9 says (the first HMAC(seed, "loramesh p256
	// identity v1" || c) in range, c one byte from 00).
	seed := bytes.Repeat([]byte{3}, 32)
	id, err := memory.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	var d []byte
	for c := byte(0); d == nil; c++ {
		m := hmac.New(sha256.New, seed)
		m.Write(append([]byte("loramesh p256 identity v1"), c))
		if v := new(big.Int).SetBytes(m.Sum(nil)); v.Sign() > 0 && v.Cmp(elliptic.P256().Params().N) < 0 {
			d = m.Sum(nil)
		}
	}
	x, y := elliptic.P256().ScalarBaseMult(d)
	if pub := dhPub(t, id, keystore.P256); !bytes.Equal(pub.Bytes(), elliptic.MarshalCompressed(elliptic.P256(), x, y)) {
		t.Fatal("the memory identity's P-256 key is not the one docs/PROTOCOL.md §9 derives")
	}
	var out [32]byte
	if err := id.DH(xZeroPeer(t, d), &out); !errors.Is(err, core.ErrInvalidPublicKey) {
		t.Fatalf("memory identity DH with x = 0: %v", err)
	}
}
