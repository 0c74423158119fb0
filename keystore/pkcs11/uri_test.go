package pkcs11

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseURI(t *testing.T) {
	for _, c := range []struct {
		uri  string
		want Config
	}{
		{"pkcs11:token=loramesh?module-path=/usr/lib/softhsm/libsofthsm2.so",
			Config{ModulePath: "/usr/lib/softhsm/libsofthsm2.so", Token: "loramesh"}},
		{"pkcs11:token=My%20Token;object=alice;id=%01%02%ff;serial=42?module-path=/m.so&pin-source=file:/run/pin",
			Config{ModulePath: "/m.so", Token: "My Token", Serial: "42", Object: "alice", ID: []byte{1, 2, 0xff}, PINSource: "file:/run/pin"}},
		{"pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;type=private;token=a+b?pin-value=12%2634&x-vendor=1&module-path=/m.so",
			Config{ModulePath: "/m.so", Token: "a+b", PINValue: []byte("12&34")}},
		{"pkcs11:", Config{}},
	} {
		got, err := ParseURI(c.uri)
		if err != nil {
			t.Fatalf("%s: %v", c.uri, err)
		}
		if got.ModulePath != c.want.ModulePath || got.Token != c.want.Token || got.Serial != c.want.Serial ||
			got.Object != c.want.Object || !bytes.Equal(got.ID, c.want.ID) || got.PINSource != c.want.PINSource ||
			!bytes.Equal(got.PINValue, c.want.PINValue) {
			t.Fatalf("%s: parsed differently", c.uri) // never print a PIN
		}
		// Config.URI round-trips everything but the PIN value.
		back, err := ParseURI(got.URI())
		if err != nil || back.Token != got.Token || back.Object != got.Object || !bytes.Equal(back.ID, got.ID) ||
			back.ModulePath != got.ModulePath || back.PINSource != got.PINSource || back.PINValue != nil {
			t.Fatalf("%s: round trip through %s: %v", c.uri, got.URI(), err)
		}
	}
	for _, bad := range []string{
		"pkcs12:token=a",
		"token=a",
		"pkcs11:token=a;token=b",
		"pkcs11:token",
		"pkcs11:token=%4",
		"pkcs11:token=%zz",
		"pkcs11:frobnicate=1",
		"pkcs11:token=a?module-name=softhsm2",
		"pkcs11:token=a?pin-value=1&pin-value=2",
	} {
		if _, err := ParseURI(bad); !errors.Is(err, ErrURI) {
			t.Errorf("%s: %v, want ErrURI", bad, err)
		}
	}
	// Error messages never echo attribute values (a PIN may be among them).
	_, err := ParseURI("pkcs11:?pin-value=s3cret%zz")
	if err == nil || bytes.Contains([]byte(err.Error()), []byte("s3cret")) {
		t.Fatalf("error %v", err)
	}
}
