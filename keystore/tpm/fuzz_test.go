package tpm

import (
	"os"
	"testing"
)

// FuzzDecodeKey: a key file from disk never panics the parser.
func FuzzDecodeKey(f *testing.F) {
	ks := simKeystore(f, "")
	if _, err := ks.Generate("seed"); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(ks.path("seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("-----BEGIN TSS2 PRIVATE KEY-----\n-----END TSS2 PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeKey(b)
	})
}
