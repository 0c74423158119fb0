package pkcs11

import (
	"errors"
	"fmt"

	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

// Package errors. Each wraps a keystore sentinel, so errors.Is works with
// either.
var (
	ErrModuleNotFound  = errs.Sub(keystore.ErrKeystore, "PKCS#11 module not found")
	ErrModuleLoad      = errs.Sub(keystore.ErrKeystore, "PKCS#11 module not loadable")
	ErrTokenNotFound   = errs.Sub(keystore.ErrNotFound, "no such token")
	ErrTokenNotPresent = errs.Sub(keystore.ErrNotFound, "token not present")
	ErrUnsupportedHash = errs.Sub(keystore.ErrUnsupportedSuite, "only SHA-256 digests are signed")
	ErrURI             = errs.New("bad PKCS#11 URI")
	// ErrTokenUnavailable: the token is there but the module cannot read it
	// (its storage is unreadable or went away). Not a missing identity.
	ErrTokenUnavailable = errs.Sub(keystore.ErrKeystore, "token unavailable")
	// ErrKeyMismatch: a public key object of the identity does not belong
	// to its private key: the object was replaced on the token (possible
	// without the PIN for identities made before public objects were made
	// private), or the token is faulty.
	ErrKeyMismatch = errs.Sub(keystore.ErrKeystore, "public key object does not match the private key")
)

// wrap labels a module error with its step and the matching sentinel.
func wrap(step string, err error) error {
	var rv p11.Error
	if !errors.As(err, &rv) {
		return fmt.Errorf("pkcs11: %s: %w", step, err)
	}
	var s error
	switch rv {
	case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE:
		s = keystore.ErrWrongPIN
	case p11.CKR_PIN_LOCKED, p11.CKR_PIN_EXPIRED:
		s = keystore.ErrLockedOut
	case p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_RECOGNIZED:
		s = ErrTokenNotPresent
	case p11.CKR_MECHANISM_INVALID, p11.CKR_CURVE_NOT_SUPPORTED:
		s = keystore.ErrUnsupportedSuite
	case p11.CKR_SESSION_CLOSED, p11.CKR_CRYPTOKI_NOT_INITIALIZED:
		s = keystore.ErrClosed
	case p11.CKR_OBJECT_HANDLE_INVALID, p11.CKR_KEY_HANDLE_INVALID:
		s = keystore.ErrNotFound // deleted under an open Identity
	default:
		s = keystore.ErrKeystore
	}
	return fmt.Errorf("pkcs11: %s: %w (%w)", step, s, rv)
}
