package core_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/core"
	"golang.org/x/text/secure/precis"
)

// craftCard builds a card the way an attacker would, without core: the body
// map in canonical CBOR with any name, algorithm and signing key, and a
// signature from sign over "loramesh card v1" || body.
func craftCard(t testing.TB, name string, alg int, signingKey []byte, sign func(msg []byte) []byte) []byte {
	t.Helper()
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	body, err := em.Marshal(map[int]any{1: 1, 2: name, 3: alg, 4: signingKey, 5: map[int][]byte{1: x.PublicKey().Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	card, err := em.Marshal([]any{5, body, sign(append([]byte("loramesh card v1"), body...))})
	if err != nil {
		t.Fatal(err)
	}
	return card
}

// ed25519Card crafts a card with a genuine Ed25519 key and a valid
// signature, whatever the name.
func ed25519Card(t testing.TB, name string) []byte {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return craftCard(t, name, core.SigEd25519, pub, func(m []byte) []byte { return ed25519.Sign(priv, m) })
}

// The display name rule of docs/PROTOCOL.md §5 on the names of the issue
// (blank and invisible names that display as "Alice", U+00A0) and more: what
// NewCard makes of each, and whether a card carrying the name as given, as
// another implementation might write it, parses. A card parses only with a
// name already in its prepared form.
func TestDisplayNames(t *testing.T) {
	id := mustIdentity(t)
	const refused = "\x00refused"
	for _, c := range []struct{ in, want string }{
		{"Alice", "Alice"},
		{"alice", "alice"},
		{"Bob's TPM", "Bob's TPM"},
		{"Zoë", "Zoë"},            // NFC
		{"Zoe\u0308", "Zoë"},      // NFD: normalised
		{"Ｚoë", "Zoë"},            // fullwidth Z: NFKC
		{"ﬁona", "fiona"},         // ligature: NFKC
		{"Alice ", "Alice"},       // trailing space
		{" Alice", "Alice"},       // leading space
		{"Al  ice", "Al ice"},     // inner run
		{"Al\u00a0ice", "Al ice"}, // no-break space
		{"Alice\u00a0", "Alice"},  // trailing no-break space
		{"Alice\u3000", "Alice"},  // ideographic space
		{"日本語", "日本語"},            //
		{"Жанна", "Жанна"},        //
		{"😀", "😀"},                // emoji without variation selector
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("é", 32), strings.Repeat("é", 32)}, // 64 bytes
		{"Alice\u3164", refused},                           // Hangul filler
		{"\u3164", refused},                                //
		{"\uffa0", refused},                                // halfwidth Hangul filler
		{"\u115fAlice", refused},                           // Hangul choseong filler
		{"Alice\u1160", refused},                           // Hangul jungseong filler
		{"Ali\u034fce", refused},                           // combining grapheme joiner
		{"Alice\ufe0f", refused},                           // variation selector 16
		{"\u2764\ufe0f", refused},                          // red heart with VS16
		{"Alice\u2800", refused},                           // braille blank
		{"\u2800", refused},                                //
		{"Alice\U0001D159", refused},                       // musical null notehead
		{"Al\u200bice", refused},                           // zero width space
		{"a\u200db", refused},                              // ZWJ outside its context
		{"bob\u202egpj", refused},                          // right-to-left override
		{"\u00adAlice", refused},                           // soft hyphen
		{"\ufeffAlice", refused},                           // BOM
		{"Alice\U000E0041", refused},                       // tag
		{"A\u2028B", refused},                              // line separator
		{"a\tb", refused},                                  // control
		{"bell\a", refused},                                //
		{"\u0378x", refused},                               // unassigned in Unicode 15
		{"\ufdd0", refused},                                // noncharacter
		{"", refused},                                      //
		{"   ", refused},                                   // empty once spaces go
		{"\xff", refused},                                  // not UTF-8
		{strings.Repeat("a", 65), refused},
		{strings.Repeat("é", 32) + "a", refused},
	} {
		b, err := core.NewCard(id, c.in)
		if c.want == refused {
			if !errors.Is(err, core.ErrBadName) {
				t.Errorf("NewCard(%+q): %v, want ErrBadName", c.in, err)
			}
		} else if card, perr := core.ParseCard(b); err != nil || perr != nil || card.Name != c.want {
			t.Errorf("NewCard(%+q): %v %v, want the name %+q", c.in, err, perr, c.want)
		}
		// As given, in a card signed by its key.
		_, err = core.ParseCard(ed25519Card(t, c.in))
		if accept := c.want == c.in; accept != (err == nil) {
			t.Errorf("card named %+q: %v, want accepted %v", c.in, err, accept)
		} else if err != nil && (!errors.Is(err, core.ErrBadCard) || utf8.ValidString(c.in) && !errors.Is(err, core.ErrBadName)) {
			t.Errorf("card named %+q: %v", c.in, err)
		}
	}
}

// Every default-ignorable code point, noncharacter and format character
// (as Unicode 15.0's UCD tables in package unicode derive them), and every
// white space but U+0020, is refused inside a name or mapped away: no name
// carrying one is canonical.
func TestNameRuleCoversIgnorablesAndSpaces(t *testing.T) {
	if unicode.Version != precis.UnicodeVersion {
		t.Fatalf("package unicode has Unicode %s, precis %s: the sets below would not match", unicode.Version, precis.UnicodeVersion)
	}
	n := 0
	for _, tab := range []*unicode.RangeTable{unicode.Other_Default_Ignorable_Code_Point, unicode.Cf,
		unicode.Variation_Selector, unicode.Noncharacter_Code_Point, unicode.White_Space} {
		for r := rune(0); r <= unicode.MaxRune; r++ {
			if !unicode.Is(tab, r) || r == ' ' {
				continue
			}
			n++
			in := "a" + string(r) + "b"
			if p, err := core.PrepareName(in); err == nil && p == in {
				t.Errorf("U+%04X accepted in a name", r)
			}
		}
	}
	if n < 4000 {
		t.Fatalf("only %d code points checked", n)
	}
}

// The prepared form is stable, and the Unicode version the rule depends on
// is the one docs/PROTOCOL.md states: a toolchain or x/text update that
// changes the tables fails here until the specification says so.
func TestNameRuleUnicodeVersion(t *testing.T) {
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(strings.Fields(string(doc)), " "), "**Unicode "+precis.UnicodeVersion+"** tables") {
		t.Fatalf("docs/PROTOCOL.md §5 does not name Unicode %s, the version of the precis tables", precis.UnicodeVersion)
	}
	for _, in := range []string{"Zoe\u0308 ", "Ａ\u00a0 B", "ﬁ\u2003ﬁ", "\u1e9b\u0323"} {
		p, err := core.PrepareName(in)
		if err != nil {
			t.Fatal(err)
		}
		if q, err := core.PrepareName(p); err != nil || q != p {
			t.Fatalf("%+q prepares to %+q, then to %+q", in, p, q)
		}
	}
}
