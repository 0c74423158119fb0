package webcrypto

import (
	"bytes"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/files"
	"github.com/loramesh/loramesh-core/keystore"
)

// Protection says how an identity's private keys are stored.
type Protection int

const (
	// ProtectNone stores the non-extractable CryptoKeys as they are (plain
	// PKCS#8 in the browser profile on disk).
	ProtectNone Protection = 1
	// ProtectPRF stores them only wrapped under a key derived from a FIDO2
	// security key's WebAuthn PRF output.
	ProtectPRF Protection = 2
)

func (p Protection) String() string {
	switch p {
	case ProtectNone:
		return "none"
	case ProtectPRF:
		return "prf"
	}
	return fmt.Sprintf("protection(%d)", int(p))
}

// roleSign names the signing key among the wrapped keys; DH keys go by
// their suite number (1 X25519, 2 P-256).
const roleSign = 0

const (
	recordVersion = 1
	saltSize      = 32
	ivSize        = 12
	maxCred       = 1023 // WebAuthn credential IDs are at most 1023 bytes
	maxWrapped    = 512  // a wrapped PKCS#8 key is about 60-170 bytes
)

// record is what the keystore stores about an identity besides the
// CryptoKeys of ProtectNone: its public keys, and for ProtectPRF the
// credential, the PRF salt and the wrapped private keys (IV || AES-GCM).
type record struct {
	Version int              `cbor:"1,keyasint"`
	Name    string           `cbor:"2,keyasint"`
	SigAlg  int              `cbor:"3,keyasint"`
	SignPub []byte           `cbor:"4,keyasint"`
	DH      map[uint8][]byte `cbor:"5,keyasint"`
	Protect Protection       `cbor:"6,keyasint"`
	Cred    []byte           `cbor:"7,keyasint,omitempty"`
	Salt    []byte           `cbor:"8,keyasint,omitempty"`
	Wrapped map[uint8][]byte `cbor:"9,keyasint,omitempty"`
}

var (
	recEnc, _ = cbor.CoreDetEncOptions().EncMode()
	recDec, _ = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
)

func (r *record) encode() []byte {
	b, _ := recEnc.Marshal(r)
	return b
}

// parseRecord decodes and checks a stored record strictly: canonical CBOR,
// known fields, valid public keys, and exactly the wrapped keys its
// protection calls for. A record that fails is reported, never half used.
func parseRecord(b []byte) (*record, error) {
	var r record
	if err := recDec.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	if c, err := recEnc.Marshal(&r); err != nil || !bytes.Equal(c, b) {
		return nil, fmt.Errorf("%w: not its canonical encoding", ErrRecord)
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("%w: version %d", ErrRecord, r.Version)
	}
	if files.CheckName(r.Name) != nil {
		return nil, fmt.Errorf("%w: invalid name", ErrRecord)
	}
	k, err := core.ParseSigningKey(r.SignPub)
	if err != nil || k.Alg() != r.SigAlg {
		return nil, fmt.Errorf("%w: signing key", ErrRecord)
	}
	if len(r.DH) == 0 {
		return nil, fmt.Errorf("%w: no DH key", ErrRecord)
	}
	for s, kb := range r.DH {
		if _, err := keystore.ParsePublicKey(keystore.Suite(s), kb); err != nil {
			return nil, fmt.Errorf("%w: DH key: %v", ErrRecord, err)
		}
	}
	switch r.Protect {
	case ProtectNone:
		if r.Cred != nil || r.Salt != nil || r.Wrapped != nil {
			return nil, fmt.Errorf("%w: wrapping fields on an unwrapped identity", ErrRecord)
		}
	case ProtectPRF:
		if len(r.Cred) == 0 || len(r.Cred) > maxCred || len(r.Salt) != saltSize || len(r.Wrapped) != len(r.DH)+1 {
			return nil, fmt.Errorf("%w: wrapping fields", ErrRecord)
		}
		for role, w := range r.Wrapped {
			if _, dh := r.DH[role]; (role != roleSign && !dh) || len(w) < ivSize+16 || len(w) > maxWrapped {
				return nil, fmt.Errorf("%w: wrapped key %d", ErrRecord, role)
			}
		}
	default:
		return nil, fmt.Errorf("%w: protection %d", ErrRecord, r.Protect)
	}
	return &r, nil
}

// suites lists the record's DH suites, X25519 first.
func (r *record) suites() []keystore.Suite {
	var out []keystore.Suite
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if _, ok := r.DH[uint8(s)]; ok {
			out = append(out, s)
		}
	}
	return out
}

// wrapAAD binds a wrapped key to its identity, its role and its public
// key, so that stored blobs cannot be swapped between roles or identities
// and the record's public keys cannot be changed under them.
func wrapAAD(name string, role uint8, pub []byte) []byte {
	return append(append([]byte("loramesh key v1\x00"+name+"\x00"), role), pub...)
}

// hkdfInfo is the HKDF info of an identity's wrapping key.
func hkdfInfo(name string) []byte { return []byte("loramesh identity wrap v1\x00" + name) }
