package memory

import (
	"github.com/loramesh/loramesh-core/internal/errs"
	"github.com/loramesh/loramesh-core/keystore"
)

// ErrCorrupt means an identity file is truncated or not an identity file.
var ErrCorrupt = errs.Sub(keystore.ErrKeystore, "identity file corrupted or not an identity file")

// ErrParams: argon2id parameters outside what any identity file may hold.
var ErrParams = errs.Sub(keystore.ErrKeystore, "argon2id parameters out of range (time 1-16, threads >= 1, memory 8*threads KiB to 1 GiB)")

// ErrCost: an identity file asks for more argon2id memory or time than the
// keystore's limit (DefaultMaxParams unless raised).
var ErrCost = errs.Sub(keystore.ErrKeystore, "argon2id cost above this keystore's limit")
