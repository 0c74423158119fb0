package core

import (
	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// Sentinel errors for errors.Is. Messages never contain secrets or bytes an
// attacker sent; each call wraps them with the step that failed.
var (
	ErrAuth         = errs.New("authentication failed")
	ErrReplay       = errs.New("replayed or duplicate message")
	ErrMalformed    = errs.New("malformed input")
	ErrVersion      = errs.New("unsupported format version or packet kind")
	ErrLimit        = errs.New("message limit reached, a new handshake is due")
	ErrTooOld       = errs.New("message outside the receive window")
	ErrUnknownPeer  = errs.New("initiator is not an accepted contact")
	ErrState        = errs.New("object used out of order or after close")
	ErrBadCard      = errs.New("invalid contact card")
	ErrLockedMemory = secret.ErrLockedMemory

	ErrUnsupportedSuite = keystore.ErrUnsupportedSuite
	ErrInvalidPublicKey = keystore.ErrInvalidPublicKey
	ErrKeystore         = keystore.ErrKeystore
)
