package secret

import (
	"bytes"
	"testing"
)

func TestSlotsAndBuffers(t *testing.T) {
	_, before := Usage()
	var a, b *[32]byte
	if err := NewN(&a, &b); err != nil || a == b {
		t.Fatal(err)
	}
	a[0] = 1
	if _, used := Usage(); used != before+64 {
		t.Fatalf("in use %d, want %d", used, before+64)
	}
	Free(a)
	Free(b)
	if a[0] != 0 {
		t.Fatal("freed slot not wiped")
	}
	if _, used := Usage(); used != before {
		t.Fatal("slots not returned")
	}
	buf, err := NewBuffer([]byte("passphrase"))
	if err != nil || !bytes.Equal(buf.Bytes(), []byte("passphrase")) {
		t.Fatal(err)
	}
	mem := buf.mem
	buf.Free()
	buf.Free() // twice is harmless
	if buf.Bytes() != nil || len(mem) == 0 {
		t.Fatal("freed buffer still readable")
	}
	if empty, _ := NewBuffer(nil); empty.Bytes() != nil {
		t.Fatal("empty buffer")
	}
}

func TestIsZero(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want bool
	}{{nil, true}, {make([]byte, 32), true}, {append(make([]byte, 31), 1), false}, {[]byte{0x80}, false}} {
		if IsZero(c.b) != c.want {
			t.Fatalf("IsZero(%x) != %v", c.b, c.want)
		}
	}
}
