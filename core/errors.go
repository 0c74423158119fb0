package core

import (
	"errors"

	"github.com/loramesh/loramesh-core/keystore"
)

// Sentinel errors for errors.Is. Messages never contain secrets or bytes an
// attacker sent.
var (
	ErrAuth             = errors.New("loramesh: authentication failed")
	ErrReplay           = errors.New("loramesh: replayed or duplicate message")
	ErrMalformed        = errors.New("loramesh: malformed input")
	ErrVersion          = errors.New("loramesh: unsupported format version or packet kind")
	ErrLimit            = errors.New("loramesh: message limit reached, a new handshake is due")
	ErrTooOld           = errors.New("loramesh: message outside the receive window")
	ErrUnknownPeer      = errors.New("loramesh: initiator is not an accepted contact")
	ErrLockedMemory     = errors.New("loramesh: cannot lock memory for secrets")
	ErrState            = errors.New("loramesh: object used out of order or after close")
	ErrBadCard          = errors.New("loramesh: invalid contact card")
	ErrUnsupportedSuite = keystore.ErrUnsupportedSuite
	ErrInvalidPublicKey = keystore.ErrInvalidPublicKey
	ErrKeystore         = keystore.ErrKeystore
)
