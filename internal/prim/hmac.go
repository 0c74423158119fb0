package prim

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/loramesh/loramesh-core/internal/secret"
)

// HMAC writes HMAC-SHA256(key, data...) into out (RFC 2104). Keys up to one
// block and data up to maxStackData bytes (every call in the protocol and in
// sealing) use buffers on
// the stack, because crypto/hmac allocates eight heap objects a call, each of
// which runtime/secret must track and erase; longer inputs take crypto/hmac.
// A test checks both against crypto/hmac.
func HMAC(out *[32]byte, key []byte, data ...[]byte) {
	n := 0
	for _, d := range data {
		n += len(d)
	}
	if len(key) > 64 || n > maxStackData {
		long(out, key, data)
		return
	}
	var in [64 + maxStackData]byte
	var outer [64 + 32]byte
	for i := range 64 {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		in[i], outer[i] = k^0x36, k^0x5c
	}
	n = 64
	for _, d := range data {
		n += copy(in[n:], d)
	}
	inner := sha256.Sum256(in[:n])
	copy(outer[64:], inner[:])
	*out = sha256.Sum256(outer[:])
	secret.Wipe(in[:])
	secret.Wipe(outer[:])
	secret.Wipe(inner[:])
}

// maxStackData: the longest HMAC input in use is HPKE's LabeledExpand of a
// P-256 KEM secret (internal/seal), 2+7+5+13+130+1 = 158 bytes.
const maxStackData = 160

// long is HMAC for inputs past the stack buffers. It copies its arguments
// first: handing them to crypto/hmac's interfaces would make every caller's
// buffers escape to the heap, where runtime/secret must track each one.
func long(out *[32]byte, key []byte, data [][]byte) {
	k := append([]byte(nil), key...)
	var msg []byte
	for _, d := range data {
		msg = append(msg, d...)
	}
	m := hmac.New(sha256.New, k)
	m.Write(msg)
	s := m.Sum(nil)
	copy(out[:], s)
	secret.Wipe(s)
	secret.Wipe(k)
	secret.Wipe(msg)
}
