package messenger

import (
	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/keystore"
)

// Sentinel errors for errors.Is; each call wraps them with what failed.
var (
	ErrConfig       = errs.New("invalid engine configuration")
	ErrProtocol     = errs.New("packet breaks the messenger protocol")
	ErrNoContact    = errs.New("no such contact")
	ErrContactName  = errs.New("invalid contact name (1-64 of A-Z a-z 0-9 . _ -, not starting with . or -)")
	ErrKeyChanged   = errs.New("a contact of that name holds a different key")
	ErrKeyConflict  = errs.New("the card's keys belong to another contact or to this node")
	ErrFingerprint  = errs.New("fingerprint does not match")
	ErrTooLarge     = errs.New("message too large")
	ErrQueueFull    = errs.New("too many messages queued for this contact")
	ErrNoAddress    = errs.New("no address known for this contact")
	ErrUnknownLink  = errs.New("no such link")
	ErrStateFile    = errs.Sub(keystore.ErrKeystore, "state file unreadable or corrupted")
	ErrStateInUse   = errs.New("state directory in use by another process")
	ErrStateVersion = errs.New("state written by a newer version")
	ErrStateOwner   = errs.New("state belongs to another identity")
)
