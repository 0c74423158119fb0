package keystore

import "github.com/loramesh/loramesh-core/internal/errs"

// Sentinel errors. Backends wrap them (fmt.Errorf("step: %w", ErrX)) or
// refine them, so callers can use errors.Is whatever holds the key.
var (
	ErrNotFound         = errs.New("identity not found")
	ErrExists           = errs.New("identity already exists")
	ErrUnsupportedSuite = errs.New("suite not supported")
	ErrInvalidPublicKey = errs.New("invalid public key")
	ErrWrongPIN         = errs.New("wrong PIN, passphrase or auth value")
	ErrLockedOut        = errs.New("PIN or key locked out")
	ErrClosed           = errs.New("keystore or identity closed")
	ErrKeystore         = errs.New("key holder failure")
	ErrInvalidName      = errs.Sub(ErrKeystore, "invalid identity name (1-64 of A-Z a-z 0-9 . _ -, not starting with . or -)")
)
