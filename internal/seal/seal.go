// Package seal encrypts files to an identity, wherever its key is held
// (docs/STORAGE.md): HPKE (RFC 9180) base mode, single shot, to the
// identity's own static DH key, with DHKEM(X25519, HKDF-SHA256) or
// DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305.
//
// Sealing needs only the public key and a software ephemeral key, so saving
// costs no token or TPM operation; opening costs one Identity.DH. No new
// secret exists to be kept: whoever can use the identity can open its files,
// and nobody else. Every secret of the key schedule stays on the stack or in
// locked memory, inside secret.Do.
package seal

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// RFC 9180 identifiers (section 7).
const (
	kemP256    = 0x0010
	kemX25519  = 0x0020
	kdfSHA256  = 0x0001
	aeadChaCha = 0x0003
)

// Magic opens every sealed file: "LMS" and the format version.
var Magic = [4]byte{'L', 'M', 'S', '1'}

var (
	// ErrNotSealed: the data does not start with Magic.
	ErrNotSealed = errs.New("not a sealed file")
	// ErrFormat: a sealed file's header is damaged or of an unknown suite.
	ErrFormat = errs.New("damaged sealed file header")
	// ErrOpen: the file does not open with this identity: sealed to another
	// one, or damaged.
	ErrOpen = errs.New("sealed file does not open with this identity (sealed to another identity, or damaged)")
)

// Suite is the suite an identity's files are sealed with: X25519 when the
// identity has it (software identities), else P-256 (tokens and TPMs).
func Suite(id keystore.Identity) keystore.Suite {
	for _, s := range id.Suites() {
		if s == keystore.X25519 {
			return s
		}
	}
	return keystore.P256
}

func kemOf(s keystore.Suite) (uint16, int, error) {
	switch s {
	case keystore.X25519:
		return kemX25519, 32, nil
	case keystore.P256:
		return kemP256, 65, nil
	}
	return 0, 0, keystore.ErrUnsupportedSuite
}

// Seal encrypts plaintext to the static DH key to, for purpose (a file kind:
// "state"; a file opened with another purpose does not open):
//
//	Magic || kem_id (2 bytes, big endian) || enc || ciphertext
//
// with info "loramesh sealed v1 " || purpose and the header before the
// ciphertext as associated data.
func Seal(to keystore.PublicKey, purpose string, plaintext []byte) ([]byte, error) {
	kem, nenc, err := kemOf(to.Suite())
	if err != nil {
		return nil, err
	}
	eph, dh, err := newTemps()
	if err != nil {
		return nil, err
	}
	defer secret.Free(eph)
	defer secret.Free(dh)
	var enc []byte
	switch to.Suite() {
	case keystore.X25519:
		var pub, peer [32]byte
		copy(peer[:], to.Bytes())
		if _, err := rand.Read(eph[:]); err != nil {
			return nil, err
		}
		secret.Do(func() {
			if err = prim.X25519Base(&pub, eph); err == nil {
				err = prim.X25519(dh, eph, &peer)
			}
		})
		enc = pub[:]
	case keystore.P256:
		for {
			if _, err := rand.Read(eph[:]); err != nil {
				return nil, err
			}
			if prim.P256ScalarValid(eph) {
				break
			}
		}
		var pub keystore.PublicKey
		if pub, err = prim.P256Base(eph); err == nil {
			err = prim.P256(dh, eph, to)
		}
		enc = pub.Uncompressed()
	}
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, 0, len(Magic)+2+nenc+len(plaintext)+prim.TagSize)
	out = binary.BigEndian.AppendUint16(append(out, Magic[:]...), kem)
	out = append(out, enc...)
	header := out[:len(out):len(out)]
	secret.Do(func() {
		var key [32]byte
		var nonce [12]byte
		schedule(&key, &nonce, kem, dh, enc, recipient(to), purpose)
		out = prim.Seal(&key, &nonce, out, header, plaintext)
		secret.Wipe(key[:])
	})
	return out, nil
}

// Open decrypts a sealed file with identity id: one Identity.DH.
func Open(id keystore.Identity, purpose string, sealed []byte) ([]byte, error) {
	if !IsSealed(sealed) {
		return nil, ErrNotSealed
	}
	if len(sealed) < len(Magic)+2 {
		return nil, ErrFormat
	}
	kem := binary.BigEndian.Uint16(sealed[len(Magic):])
	var s keystore.Suite
	switch kem {
	case kemX25519:
		s = keystore.X25519
	case kemP256:
		s = keystore.P256
	default:
		return nil, fmt.Errorf("%w: KEM %#04x", ErrFormat, kem)
	}
	_, nenc, _ := kemOf(s)
	hl := len(Magic) + 2 + nenc
	if len(sealed) < hl+prim.TagSize {
		return nil, ErrFormat
	}
	enc := sealed[len(Magic)+2 : hl]
	epk, err := encKey(s, enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	me, err := id.DHPublic(s)
	if err != nil {
		return nil, fmt.Errorf("%w: it is sealed with %v, which this identity lacks", ErrOpen, s)
	}
	dh, err := secret.NewTemp()
	if err != nil {
		return nil, err
	}
	defer secret.Free(dh)
	if err := id.DH(epk, dh); err != nil {
		if errors.Is(err, keystore.ErrInvalidPublicKey) {
			return nil, fmt.Errorf("%w: %w", ErrFormat, err)
		}
		return nil, fmt.Errorf("opening sealed file: %w", err)
	}
	out := make([]byte, 0, len(sealed)-hl-prim.TagSize)
	secret.Do(func() {
		var key [32]byte
		var nonce [12]byte
		schedule(&key, &nonce, kem, dh, enc, recipient(me), purpose)
		out, err = prim.Open(&key, &nonce, out, sealed[:hl], sealed[hl:])
		secret.Wipe(key[:])
	})
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// IsSealed reports whether b starts like a sealed file.
func IsSealed(b []byte) bool { return len(b) >= len(Magic) && [4]byte(b[:4]) == Magic }

func newTemps() (a, b *[32]byte, err error) {
	if a, err = secret.NewTemp(); err != nil {
		return nil, nil, err
	}
	if b, err = secret.NewTemp(); err != nil {
		secret.Free(a)
		return nil, nil, err
	}
	return a, b, nil
}

// recipient is SerializePublicKey(pkR): uncompressed for P-256.
func recipient(k keystore.PublicKey) []byte {
	if k.Suite() == keystore.P256 {
		return k.Uncompressed()
	}
	return k.Bytes()
}

// encKey is DeserializePublicKey(enc).
func encKey(s keystore.Suite, enc []byte) (keystore.PublicKey, error) {
	if s == keystore.X25519 {
		return keystore.ParsePublicKey(s, enc)
	}
	p, err := ecdh.P256().NewPublicKey(enc)
	if err != nil {
		return keystore.PublicKey{}, err
	}
	return keystore.FromECDH(p)
}

// schedule runs RFC 9180's Encap/Decap key derivation (section 4.1,
// ExtractAndExpand) and KeySchedule for mode_base (section 5.1) from the DH
// output: the AEAD key and base nonce (sequence number 0: the only message).
func schedule(key *[32]byte, nonce *[12]byte, kem uint16, dh *[32]byte, enc, pkR []byte, purpose string) {
	kemSuite := binary.BigEndian.AppendUint16([]byte("KEM"), kem)
	var prk, shared, sec, t [32]byte
	labeledExtract(&prk, kemSuite, nil, "eae_prk", dh[:])
	kemContext := append(append([]byte(nil), enc...), pkR...)
	labeledExpand(shared[:], &prk, kemSuite, "shared_secret", kemContext)

	suite := []byte("HPKE")
	for _, id := range []uint16{kem, kdfSHA256, aeadChaCha} {
		suite = binary.BigEndian.AppendUint16(suite, id)
	}
	var pskIDHash, infoHash [32]byte
	labeledExtract(&pskIDHash, suite, nil, "psk_id_hash", nil)
	labeledExtract(&infoHash, suite, nil, "info_hash", []byte("loramesh sealed v1 "+purpose))
	ctx := append(append([]byte{0x00}, pskIDHash[:]...), infoHash[:]...) // mode_base
	labeledExtract(&sec, suite, shared[:], "secret", nil)
	labeledExpand(key[:], &sec, suite, "key", ctx)
	labeledExpand(t[:12], &sec, suite, "base_nonce", ctx)
	copy(nonce[:], t[:12])
	for _, b := range [][]byte{prk[:], shared[:], sec[:], t[:]} {
		secret.Wipe(b)
	}
}

// labeledExtract is LabeledExtract(salt, label, ikm) = HKDF-Extract(salt,
// "HPKE-v1" || suite || label || ikm); an empty salt is HMAC's zero key.
func labeledExtract(out *[32]byte, suite, salt []byte, label string, ikm []byte) {
	prim.HMAC(out, salt, []byte("HPKE-v1"), suite, []byte(label), ikm)
}

// labeledExpand is LabeledExpand(prk, label, info, len(out)) for outputs of
// at most one hash block: T(1) = HMAC(prk, I2OSP(L, 2) || "HPKE-v1" || suite
// || label || info || 0x01).
func labeledExpand(out []byte, prk *[32]byte, suite []byte, label string, info []byte) {
	var t [32]byte
	l := binary.BigEndian.AppendUint16(nil, uint16(len(out)))
	prim.HMAC(&t, prk[:], l, []byte("HPKE-v1"), suite, []byte(label), info, []byte{1})
	copy(out, t[:])
	secret.Wipe(t[:])
}
