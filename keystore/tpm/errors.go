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
	// ErrSRKMismatch: the storage key the TPM presents is not the one
	// recorded (NAME.srk) when the identity was created. Either the TPM's
	// owner seed changed (tpm2_clear: the key file is dead anyway), or
	// something between this process and the TPM substitutes its own key to
	// learn the session salts. Nothing secret is sent under it.
	ErrSRKMismatch = errs.Sub(keystore.ErrKeystore, "TPM storage key differs from the one recorded at creation")
)

// AuthError reports an auth value the TPM rejected (TPM_RC_AUTH_FAIL or
// TPM_RC_BAD_AUTH) or one that was rejected before and is not offered again.
// Left is the number of wrong values the TPM still accepts before it locks
// out every dictionary-attack protected key (Known false: the TPM did not
// say). It matches keystore.ErrWrongPIN.
type AuthError struct {
	Name      string
	Left, Max uint32
	Known     bool
	NotResent bool // the value failed before: it was not sent again
	err       error
}

func (e *AuthError) Error() string {
	msg := fmt.Sprintf("%v for identity %s", keystore.ErrWrongPIN, e.Name)
	if e.NotResent {
		msg += " (this value was rejected before and is not sent to the TPM again; open the keystore with the right one)"
	}
	if e.Known {
		msg += fmt.Sprintf(": %d of %d tries left before the TPM locks out every key with an auth value (`tpm2_dictionarylockout -c` with the lockout authorization resets the count)", e.Left, e.Max)
	}
	return msg
}

func (e *AuthError) Unwrap() []error {
	if e.err != nil {
		return []error{keystore.ErrWrongPIN, e.err}
	}
	return []error{keystore.ErrWrongPIN}
}

// LockoutError reports TPM_RC_LOCKOUT: the dictionary-attack counter reached
// its maximum. Wait is the TPM's lockout interval (the time until one more
// try is allowed), zero if the TPM did not report it. It matches
// keystore.ErrLockedOut.
type LockoutError struct {
	Wait time.Duration
}

func (e *LockoutError) Error() string {
	const clear = "; `tpm2_dictionarylockout -c` with the lockout authorization clears it"
	if e.Wait > 0 {
		return fmt.Sprintf("%v: TPM dictionary-attack lockout, one more try in %v%s", keystore.ErrLockedOut, e.Wait, clear)
	}
	return fmt.Sprintf("%v: TPM dictionary-attack lockout%s", keystore.ErrLockedOut, clear)
}

func (e *LockoutError) Unwrap() error { return keystore.ErrLockedOut }

// isAuthFail reports whether err is the TPM rejecting an auth value.
func isAuthFail(err error) bool {
	return errors.Is(err, tpm2.TPMRCAuthFail) || errors.Is(err, tpm2.TPMRCBadAuth)
}

// classify wraps a TPM error from step with the keystore sentinel it means.
// TPM error text never contains secrets, so it is kept for diagnosis.
func classify(step string, err error) error {
	var ae *AuthError
	switch {
	case errors.As(err, &ae):
		return fmt.Errorf("tpm: %s: %w", step, err)
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
	if errors.As(err, &le) || errors.Is(err, keystore.ErrClosed) || errors.Is(err, ErrSRKMismatch) {
		return fmt.Errorf("tpm: %s: %w", step, err)
	}
	return fmt.Errorf("tpm: %s: %w (%w)", step, keystore.ErrKeystore, err)
}
