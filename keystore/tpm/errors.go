package tpm

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/keystore"
)

// Errors specific to TPMs. Each also matches keystore.ErrKeystore.
var (
	ErrNoDevice   = errs.Sub(keystore.ErrKeystore, "TPM device not found")
	ErrPermission = errs.Sub(keystore.ErrKeystore, "permission denied on the TPM device (is the user in group tss?)")
	ErrBadBlob    = errs.Sub(keystore.ErrKeystore, "key blob does not load on this TPM (made by another TPM or under another owner seed?)")
	ErrNoP256     = errs.Sub(keystore.ErrKeystore, "TPM does not support ECC P-256")
)

// LockoutError reports TPM_RC_LOCKOUT: the dictionary-attack counter reached
// its maximum. Wait is the TPM's lockout interval (the time until one more
// try is allowed), zero if the TPM did not report it. It matches
// keystore.ErrLockedOut.
type LockoutError struct {
	Wait time.Duration
}

func (e *LockoutError) Error() string {
	if e.Wait > 0 {
		return fmt.Sprintf("%v: TPM dictionary-attack lockout, retry in %v", keystore.ErrLockedOut, e.Wait)
	}
	return fmt.Sprintf("%v: TPM dictionary-attack lockout", keystore.ErrLockedOut)
}

func (e *LockoutError) Unwrap() error { return keystore.ErrLockedOut }

// isAuthFail reports whether err is the TPM rejecting an auth value.
func isAuthFail(err error) bool {
	return errors.Is(err, tpm2.TPMRCAuthFail) || errors.Is(err, tpm2.TPMRCBadAuth)
}

// classify wraps a TPM error from step with the keystore sentinel it means.
// TPM error text never contains secrets, so it is kept for diagnosis.
func classify(step string, err error) error {
	switch {
	case isAuthFail(err):
		return fmt.Errorf("tpm: %s: %w (%w)", step, keystore.ErrWrongPIN, err)
	case errors.Is(err, tpm2.TPMRCIntegrity):
		return fmt.Errorf("tpm: %s: %w (%w)", step, ErrBadBlob, err)
	case errors.Is(err, tpm2.TPMRCCurve):
		return fmt.Errorf("tpm: %s: %w (%w)", step, ErrNoP256, err)
	case errors.Is(err, tpm2.TPMRCECCPoint):
		return fmt.Errorf("tpm: %s: %w (%w)", step, keystore.ErrInvalidPublicKey, err)
	}
	var le *LockoutError
	if errors.As(err, &le) || errors.Is(err, keystore.ErrClosed) {
		return fmt.Errorf("tpm: %s: %w", step, err)
	}
	return fmt.Errorf("tpm: %s: %w (%w)", step, keystore.ErrKeystore, err)
}
