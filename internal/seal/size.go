package seal

import (
	"encoding/binary"
	"fmt"

	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/keystore"
)

// Size is the length of n bytes sealed with suite s, so a caller can size
// its buffer before anything is encrypted.
func Size(s keystore.Suite, n int) (int, error) {
	_, nenc, err := kemOf(s)
	if err != nil {
		return 0, err
	}
	return len(Magic) + 2 + nenc + n + prim.TagSize, nil
}

// OpenedSize is the length of what sealed opens to, read from its header
// alone (no key is used): ErrNotSealed or ErrFormat when the header says
// it cannot be a sealed file.
func OpenedSize(sealed []byte) (int, error) {
	if !IsSealed(sealed) {
		return 0, ErrNotSealed
	}
	if len(sealed) < len(Magic)+2 {
		return 0, ErrFormat
	}
	var s keystore.Suite
	switch kem := binary.BigEndian.Uint16(sealed[len(Magic):]); kem {
	case kemX25519:
		s = keystore.X25519
	case kemP256:
		s = keystore.P256
	default:
		return 0, fmt.Errorf("%w: KEM %#04x", ErrFormat, kem)
	}
	over, _ := Size(s, 0)
	if len(sealed) < over {
		return 0, ErrFormat
	}
	return len(sealed) - over, nil
}
