package tpm

import (
	"encoding/pem"
	"errors"
	"fmt"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	"github.com/google/go-tpm/tpm2"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

const pemType = "TSS2 PRIVATE KEY"

// encodeKey returns the TSS2 PRIVATE KEY PEM for a loadable key under the
// owner-hierarchy SRK. It writes no description (tpm2-tools 5.4 and
// tpm2-openssl reject it) and always writes emptyAuth, as FALSE when the key
// has an auth value: go-tpm-keyfiles omits it then, and tpm2-openssl would
// act as if the auth were empty.
func encodeKey(pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate, hasAuth bool) ([]byte, error) {
	k := keyfile.NewTPMKey(keyfile.OIDLoadableKey, pub, priv)
	k.EmptyAuth = !hasAuth
	der := keyfile.Marshal(k)
	if hasAuth {
		var err error
		if der, err = insertEmptyAuthFalse(der); err != nil {
			return nil, err
		}
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// insertEmptyAuthFalse puts [0] EXPLICIT BOOLEAN FALSE (a0 03 01 01 00)
// right after the type OID, where the TSS2 key ASN.1 module has it.
func insertEmptyAuthFalse(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	var oid cryptobyte.String
	var tag asn1.Tag
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadAnyASN1Element(&oid, &tag) || tag != asn1.OBJECT_IDENTIFIER {
		return nil, fmt.Errorf("tpm: encoding key file: %w", keystore.ErrKeystore)
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(oid)
		b.AddBytes([]byte{0xa0, 0x03, 0x01, 0x01, 0x00})
		b.AddBytes(seq)
	})
	return b.Bytes()
}

// decodeKey parses a key file written by encodeKey or by other TSS2 tools.
func decodeKey(b []byte) (*keyfile.TPMKey, error) {
	k, err := keyfile.Decode(b)
	if err != nil {
		return nil, err
	}
	if !k.Keytype.Equal(keyfile.OIDLoadableKey) || len(k.Policy) != 0 || len(k.AuthPolicy) != 0 {
		return nil, errors.New("not a plain loadable key")
	}
	if k.Parent != tpm2.TPMRHOwner && k.Parent != 0 {
		return nil, errors.New("parent is not the owner-hierarchy SRK")
	}
	return k, nil
}
