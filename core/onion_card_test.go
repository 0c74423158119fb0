package core_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/onion"
)

// Addresses tor generated (the Tor Project's and DuckDuckGo's services);
// internal/onion tests the address rule itself.
var torOnions = []string{
	"2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion",
	"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCardOnion(t *testing.T) {
	id := mustIdentity(t)
	plain, err := core.NewCard(id, "Alice")
	if err != nil {
		t.Fatal(err)
	}
	withOnion, err := core.NewCardWith(id, "Alice", core.CardOptions{Onion: torOnions[1]})
	if err != nil {
		t.Fatal(err)
	}
	a, err := core.ParseCard(plain)
	if err != nil || a.Onion() != "" {
		t.Fatalf("card without onion: %v %q", err, a.Onion())
	}
	b, err := core.ParseCard(withOnion)
	if err != nil || b.Onion() != torOnions[1] || b.Fingerprint() != a.Fingerprint() {
		t.Fatalf("card with onion: %v %q", err, b.Onion())
	}
	if len(withOnion)-len(plain) != 1+2+onion.Len {
		t.Fatalf("the field costs %d bytes", len(withOnion)-len(plain))
	}
	for i := range withOnion {
		bad := bytes.Clone(withOnion)
		bad[i] ^= 0x01
		if _, err := core.ParseCard(bad); !errors.Is(err, core.ErrBadCard) {
			t.Fatalf("flipped byte %d accepted: %v", i, err)
		}
	}
	for _, o := range []string{"ABC.onion", strings.ToUpper(torOnions[0][:56]) + ".onion", "b" + torOnions[0][1:]} {
		if _, err := core.NewCardWith(id, "Alice", core.CardOptions{Onion: o}); !errors.Is(err, core.ErrBadCard) {
			t.Fatalf("onion %q accepted: %v", o, err)
		}
	}
	// Signed cards that break the field's rules: an empty string (the
	// encoder omits it), an invalid address, a byte string, an unknown key 7.
	for what, body := range map[string]map[int]any{
		"empty onion":     {6: ""},
		"invalid onion":   {6: "b" + torOnions[0][1:]},
		"onion as bytes":  {6: []byte(torOnions[0])},
		"unknown field 7": {7: "x"},
	} {
		if _, err := core.ParseCard(core.ResignCard(t, id, plain, body)); !errors.Is(err, core.ErrBadCard) {
			t.Errorf("%s: accepted (%v)", what, err)
		}
	}
	// The control: the same re-signing with a valid onion is accepted.
	if c, err := core.ParseCard(core.ResignCard(t, id, plain, map[int]any{6: torOnions[0]})); err != nil || c.Onion() != torOnions[0] {
		t.Fatalf("re-signed card with onion refused: %v", err)
	}
}
