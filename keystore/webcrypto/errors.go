package webcrypto

import (
	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/keystore"
)

// Sentinel errors; each also matches the keystore sentinel it refines.
var (
	// ErrRecord: a stored identity record does not parse or breaks its rules.
	ErrRecord = errs.Sub(keystore.ErrKeystore, "stored identity record unreadable or corrupted")
	// ErrNoPRF: the authenticator (or the browser) does not offer the
	// WebAuthn PRF extension, so it cannot protect or unlock an identity.
	ErrNoPRF = errs.Sub(keystore.ErrKeystore, "the security key or the browser has no WebAuthn PRF extension")
	// ErrAuthenticator: the security key was not used: cancelled, timed
	// out, or not the one holding the identity's credential.
	ErrAuthenticator = errs.Sub(keystore.ErrKeystore, "the security key was not used (cancelled, timed out, or another key)")
	// ErrUnwrap: the PRF output does not unwrap the identity's keys (another
	// credential, or altered records).
	ErrUnwrap = errs.Sub(keystore.ErrWrongPIN, "the security key does not unlock this identity")
	// ErrUnsupported: the browser lacks an algorithm the identity needs.
	ErrUnsupported = errs.Sub(keystore.ErrUnsupportedSuite, "this browser's WebCrypto lacks the algorithm")
	// ErrDigest: WebCrypto's ECDSA signs messages, never digests; sign
	// through crypto.SignMessage.
	ErrDigest = errs.Sub(keystore.ErrKeystore, "WebCrypto ECDSA cannot sign a digest (use crypto.SignMessage)")
)
