package pkcs11

import (
	"bytes"
	"testing"
)

// FuzzParseURI: no input panics, and an accepted URI survives a round trip
// through Config.URI (which leaves out the PIN).
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=node;object=alice?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
		"pkcs11:token=My%20Token;id=%01%02;serial=42?pin-source=file:/run/pin",
		"pkcs11:", "pkcs11:token=a;token=b", "pkcs11:object=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseURI(s)
		if err != nil {
			return
		}
		d, err := ParseURI(c.URI())
		if err != nil {
			t.Fatalf("URI() of an accepted URI does not parse: %v", err)
		}
		if c.Token != d.Token || c.Object != d.Object || c.Serial != d.Serial || !bytes.Equal(c.ID, d.ID) || c.ModulePath != d.ModulePath || c.PINSource != d.PINSource {
			t.Fatal("round trip changed the URI")
		}
	})
}
