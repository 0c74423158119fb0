package seal_test

import (
	"errors"
	"testing"

	"github.com/loramesh/loramesh-core/internal/seal"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// Size and OpenedSize agree with what Seal writes, for every length up to
// a few blocks and both suites' headers, and reject headers that cannot be.
func TestSizes(t *testing.T) {
	id, err := memory.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := id.DHPublic(seal.Suite(id))
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 100; n += 7 {
		b, err := seal.Seal(pub, "size", make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := seal.Size(pub.Suite(), n); len(b) != want {
			t.Fatalf("%d bytes: sealed %d, Size says %d", n, len(b), want)
		}
		if got, err := seal.OpenedSize(b); err != nil || got != n {
			t.Fatalf("%d bytes: OpenedSize %d, %v", n, got, err)
		}
		if _, err := seal.OpenedSize(b[:len(b)-n-1]); !errors.Is(err, seal.ErrFormat) {
			t.Fatalf("%d bytes: truncated header: %v", n, err)
		}
	}
	if p, _ := seal.Size(keystore.P256, 0); p != 4+2+65+16 {
		t.Fatalf("P-256 overhead %d", p)
	}
	for _, b := range [][]byte{nil, []byte("LMS"), []byte("LMS2xxxxxxxxxx"), append(seal.Magic[:], 0, 0x99)} {
		if _, err := seal.OpenedSize(b); !errors.Is(err, seal.ErrNotSealed) && !errors.Is(err, seal.ErrFormat) {
			t.Fatalf("%q: %v", b, err)
		}
	}
	if _, err := seal.Size(keystore.Suite(99), 1); err == nil {
		t.Fatal("unknown suite sized")
	}
}
