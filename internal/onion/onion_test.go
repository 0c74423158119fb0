package onion_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/base32"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/loramesh/loramesh-core/internal/onion"
)

// Addresses tor generated (the Tor Project's and DuckDuckGo's services).
var torOnions = []string{
	"2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion",
	"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
}

// onionOf builds an address from raw parts as the spec says, independently
// of the code under test, so tests can build wrong ones on purpose.
func onionOf(pub []byte, version byte) string {
	h := sha3.Sum256(append(append([]byte(".onion checksum"), pub...), version))
	raw := append(append(bytes.Clone(pub), h[:2]...), version)
	return strings.ToLower(base32.StdEncoding.EncodeToString(raw)) + ".onion"
}

func TestOnionAddresses(t *testing.T) {
	for _, a := range torOnions {
		if err := onion.Check(a); err != nil {
			t.Fatalf("%s refused: %v", a, err)
		}
	}
	for range 20 {
		pub, _, _ := ed25519.GenerateKey(nil)
		a, err := onion.FromKey(pub)
		if err != nil || a != onionOf(pub, 3) || onion.Check(a) != nil {
			t.Fatalf("key %x: %q %v", pub, a, err)
		}
	}
	good := torOnions[0]
	order2 := append([]byte{0xec}, bytes.Repeat([]byte{0xff}, 30)...) // y = -1: a point of order 2
	order2 = append(order2, 0x7f)
	pub := must(base32.StdEncoding.DecodeString(strings.ToUpper(strings.TrimSuffix(good, ".onion"))))[:32]
	p, _ := new(edwards25519.Point).SetBytes(pub)
	t2, _ := new(edwards25519.Point).SetBytes(order2)
	torsioned := new(edwards25519.Point).Add(p, t2).Bytes()
	identity := edwards25519.NewIdentityPoint().Bytes()
	nonCanonical := append([]byte{0xee}, bytes.Repeat([]byte{0xff}, 30)...) // y = p + 1 (the encoding of y = 1 plus p)
	nonCanonical = append(nonCanonical, 0x7f)
	bad := map[string]string{
		"upper case":         strings.ToUpper(good[:56]) + ".onion",
		"no suffix":          good[:56],
		"other suffix":       good[:56] + ".onion.",
		"short":              good[1:],
		"long":               "a" + good,
		"not base32":         "0" + good[1:],
		"version 2":          onionOf(pub, 2),
		"version 4":          onionOf(pub, 4),
		"identity point":     onionOf(identity, 3),
		"order-2 point":      onionOf(order2, 3),
		"torsion component":  onionOf(torsioned, 3),
		"non-canonical y":    onionOf(nonCanonical, 3),
		"v2 address":         "expyuzz4wqqyqhjn.onion",
		"empty":              "",
		"trailing bits":      good[:55] + "b.onion",
		"wrong checksum":     good[:52] + "aaaa.onion",
		"whitespace":         " " + good[1:],
		"invalid UTF-8 tail": good[:55] + "\xff.onion",
	}
	for what, a := range bad {
		if err := onion.Check(a); !errors.Is(err, onion.ErrAddress) {
			t.Errorf("%s (%q) accepted: %v", what, a, err)
		}
	}
	for i := range 56 { // every single-character change is caught
		for _, c := range "abcdefghijklmnopqrstuvwxyz234567" {
			if byte(c) == good[i] {
				continue
			}
			a := good[:i] + string(c) + good[i+1:]
			if onion.Check(a) == nil {
				t.Fatalf("%s (character %d changed) accepted", a, i)
			}
		}
	}
	if _, err := onion.FromKey(identity); err == nil {
		t.Fatal("FromKey took the identity point")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
