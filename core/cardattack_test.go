package core_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"testing"

	"filippo.io/edwards25519"
	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/core"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

var p256N = elliptic.P256().Params().N

// highS is an ECDSA signer that always answers with the high twin (s > n/2)
// of its signature, as tokens and TPMs may.
type highS struct{ *p256Identity }

func (h highS) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	rr, s, err := ecdsa.Sign(r, h.priv, d)
	if err != nil {
		return nil, err
	}
	if s.Cmp(new(big.Int).Rsh(p256N, 1)) <= 0 {
		s.Sub(p256N, s)
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1BigInt(rr); b.AddASN1BigInt(s) })
	return b.Bytes()
}

// Issue 11 #4. An attacker takes a genuine P-256 card and replaces s by
// n - s: the standard library still verifies the signature, so the card
// would have a second encoding. It is refused. A card crafted from scratch
// with a high s is refused too, and a signer that returns high s still
// makes cards (and signatures) with low s that parse.
func TestHighSCardsRefused(t *testing.T) {
	id := highS{newP256Identity()}
	b, err := core.NewCard(id, "Bob's TPM")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		_    struct{} `cbor:",toarray"`
		Kind int
		Body []byte
		Sig  []byte
	}
	if err := cbor.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	r, s := new(big.Int).SetBytes(p.Sig[:32]), new(big.Int).SetBytes(p.Sig[32:])
	if s.Cmp(new(big.Int).Rsh(p256N, 1)) > 0 {
		t.Fatal("NewCard kept a high s")
	}
	if _, err := core.ParseCard(b); err != nil {
		t.Fatal(err)
	}
	// The twin: valid for ECDSA, refused as a card.
	twin := new(big.Int).Sub(p256N, s)
	d := sha256.Sum256(append([]byte("loramesh card v1"), p.Body...))
	if !ecdsa.Verify(&id.priv.PublicKey, d[:], r, twin) {
		t.Fatal("the high twin does not verify: the test proves nothing")
	}
	p.Sig = append(r.FillBytes(make([]byte, 32)), twin.FillBytes(make([]byte, 32))...)
	forged, err := cbor.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.ParseCard(forged); !errors.Is(err, core.ErrBadCard) {
		t.Fatalf("card with the high-s twin accepted: %v", err)
	}
	// Crafted from scratch with a high s.
	key := elliptic.MarshalCompressed(elliptic.P256(), id.priv.X, id.priv.Y)
	card := craftCard(t, "Mallory", core.SigECDSAP256, key, func(m []byte) []byte {
		h := sha256.Sum256(m)
		r, s, _ := ecdsa.Sign(rand.Reader, id.priv, h[:])
		if s.Cmp(new(big.Int).Rsh(p256N, 1)) <= 0 {
			s.Sub(p256N, s)
		}
		return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	})
	if _, err := core.ParseCard(card); !errors.Is(err, core.ErrBadCard) {
		t.Fatalf("crafted high-s card accepted: %v", err)
	}
	// Signed messages: low s from a high-s signer, high s refused.
	sig, err := core.SignMessage(id, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := core.SigningKeyOf(id)
	if err := k.VerifyMessage([]byte("m"), sig); err != nil {
		t.Fatal(err)
	}
	twin = new(big.Int).Sub(p256N, new(big.Int).SetBytes(sig[32:]))
	if err := k.VerifyMessage([]byte("m"), append(sig[:32:32], twin.FillBytes(make([]byte, 32))...)); !errors.Is(err, core.ErrAuth) {
		t.Fatalf("high-s message signature accepted: %v", err)
	}
}

// smallOrderKeys are the encodings of the eight points of small order on
// edwards25519 (orders 1, 2, 4 and 8) and non-canonical encodings of some of
// them (y >= p; the last bit the sign of x), as an attacker lists them.
var smallOrderKeys = []string{
	"0100000000000000000000000000000000000000000000000000000000000000", // neutral point
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2, y = -1
	"0000000000000000000000000000000000000000000000000000000000000000", // order 4, y = 0
	"0000000000000000000000000000000000000000000000000000000000000080",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // neutral point as y = p + 1
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p + 1, sign bit set
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p: order 4, non-canonical
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
}

// Issue 11 #5 (and #16 5 for signed messages). For each small-order or
// non-canonical key the attacker signs with S = 0 and R a point of small
// order, and varies the card's name until the standard library's
// ed25519.Verify accepts the signature (for the neutral point, every name
// at once): such a signature "verifies" bodies nobody signed. Every such
// card is refused, and so is the key for signed messages.
func TestSmallOrderEd25519KeysRefused(t *testing.T) {
	var torsion [][]byte // canonical encodings, the R values to try
	for _, h := range smallOrderKeys[:8] {
		b, _ := hex.DecodeString(h)
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil || new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) != 1 {
			t.Fatalf("%s is not of small order", h)
		}
		torsion = append(torsion, p.Bytes())
	}
	for _, h := range smallOrderKeys {
		key, _ := hex.DecodeString(h)
		var card []byte
		var sig []byte
	search:
		for i := range 256 {
			name := fmt.Sprintf("Mallory %d", i)
			for _, r := range torsion {
				sig = append(append([]byte(nil), r...), make([]byte, 32)...)
				c := craftCard(t, name, core.SigEd25519, key, func([]byte) []byte { return sig })
				if body := cardBody(t, c); ed25519.Verify(key, append([]byte("loramesh card v1"), body...), sig) {
					card = c
					break search
				}
			}
		}
		if card == nil {
			t.Fatalf("key %s: no forged signature found, the test proves nothing", h)
		}
		if _, err := core.ParseCard(card); !errors.Is(err, core.ErrBadCard) || !errors.Is(err, core.ErrInvalidPublicKey) {
			t.Errorf("card signed by small-order key %s accepted: %v", h, err)
		}
		if _, err := core.ParseSigningKey(key); !errors.Is(err, core.ErrInvalidPublicKey) {
			t.Errorf("signing key %s accepted: %v", h, err)
		}
	}
	// Non-canonical encodings (y = p + k) of points that are not of small
	// order: one key, two encodings, two fingerprints. Refused.
	n := 0
	for k := 2; k <= 18; k++ {
		b, _ := hex.DecodeString(smallOrderKeys[10]) // y = p
		b[0] += byte(k)
		if p, err := new(edwards25519.Point).SetBytes(b); err != nil ||
			new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
			continue
		}
		n++
		if _, err := core.ParseSigningKey(b); !errors.Is(err, core.ErrInvalidPublicKey) {
			t.Errorf("non-canonical signing key %x accepted: %v", b, err)
		}
	}
	if n == 0 {
		t.Fatal("no non-canonical encoding of a large-order point found")
	}
}

// cardBody returns the body of a card.
func cardBody(t testing.TB, card []byte) []byte {
	var p []cbor.RawMessage
	var body []byte
	if err := cbor.Unmarshal(card, &p); err != nil || len(p) != 3 || cbor.Unmarshal(p[1], &body) != nil {
		t.Fatalf("not a card: %v", err)
	}
	return body
}
