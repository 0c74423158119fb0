package pkcs11

import (
	"errors"
	"fmt"
	"strings"
)

// Config names a PKCS#11 module, a token on it and, optionally, a default
// identity. ParseURI fills it from an RFC 7512 URI.
type Config struct {
	ModulePath string // shared library; required
	Token      string // token label; empty matches any (then exactly one token must be present)
	Serial     string // token serial number; empty matches any
	Object     string // default identity name for Keystore.Open("")
	ID         []byte // CKA_ID of the default identity, used when Object is empty

	// PINSource is a file holding the PIN (a path or a file: URI). PINValue
	// is the PIN itself, as in the URI's pin-value. Both are used only when
	// the caller passes no PIN; PINValue is the caller's to wipe.
	PINSource string
	PINValue  []byte
}

// ErrURI reports a malformed or unsupported PKCS#11 URI.

// ParseURI parses an RFC 7512 URI such as
//
//	pkcs11:token=loramesh;object=alice?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin
//
// Path attributes: token, serial, object, id (others such as manufacturer,
// model, library-* and type are accepted and ignored, since a keystore only
// holds EC key pairs). Query attributes: module-path, pin-source, pin-value;
// module-name is refused (we load by explicit path only), other unknown ones
// are ignored as the RFC asks. Values are percent-decoded. Error messages
// never repeat attribute values, which may hold a PIN.
func ParseURI(uri string) (Config, error) {
	var c Config
	rest, ok := strings.CutPrefix(uri, "pkcs11:")
	if !ok {
		return c, fmt.Errorf("%w: scheme is not pkcs11", ErrURI)
	}
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	for _, attr := range splitNonEmpty(path, ";") {
		k, v, ok := strings.Cut(attr, "=")
		if !ok {
			return c, fmt.Errorf("%w: path attribute without '='", ErrURI)
		}
		if seen[k] {
			return c, fmt.Errorf("%w: repeated attribute %q", ErrURI, k)
		}
		seen[k] = true
		b, err := percentDecode(v)
		if err != nil {
			return c, fmt.Errorf("%w: attribute %q: %v", ErrURI, k, err)
		}
		switch k {
		case "token":
			c.Token = string(b)
		case "serial":
			c.Serial = string(b)
		case "object":
			c.Object = string(b)
		case "id":
			c.ID = b
		case "manufacturer", "model", "library-manufacturer", "library-description",
			"library-version", "slot-manufacturer", "slot-description", "slot-id", "type":
		default:
			return c, fmt.Errorf("%w: unknown path attribute %q", ErrURI, k)
		}
	}
	for _, attr := range splitNonEmpty(query, "&") {
		k, v, ok := strings.Cut(attr, "=")
		if !ok {
			return c, fmt.Errorf("%w: query attribute without '='", ErrURI)
		}
		if seen["?"+k] {
			return c, fmt.Errorf("%w: repeated attribute %q", ErrURI, k)
		}
		seen["?"+k] = true
		b, err := percentDecode(v)
		if err != nil {
			return c, fmt.Errorf("%w: attribute %q: %v", ErrURI, k, err)
		}
		switch k {
		case "module-path":
			c.ModulePath = string(b)
		case "pin-source":
			c.PINSource = string(b)
		case "pin-value":
			c.PINValue = b
		case "module-name":
			return c, fmt.Errorf("%w: module-name is not supported, use module-path", ErrURI)
		}
	}
	return c, nil
}

// URI formats c as an RFC 7512 URI without the PIN value.
func (c Config) URI() string {
	var path, query []string
	add := func(dst *[]string, k string, v []byte) {
		if len(v) > 0 {
			*dst = append(*dst, k+"="+percentEncode(v, dst == &query))
		}
	}
	add(&path, "token", []byte(c.Token))
	add(&path, "serial", []byte(c.Serial))
	add(&path, "object", []byte(c.Object))
	add(&path, "id", c.ID)
	add(&query, "module-path", []byte(c.ModulePath))
	add(&query, "pin-source", []byte(c.PINSource))
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

func splitNonEmpty(s, sep string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, sep)
}

// percentDecode decodes %XX escapes into a fresh []byte (never a string, so a
// pin-value can be wiped). '+' is literal, as RFC 3986 says.
func percentDecode(s string) ([]byte, error) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return nil, errors.New("truncated percent escape")
		}
		h, l := unhex(s[i+1]), unhex(s[i+2])
		if h < 0 || l < 0 {
			return nil, errors.New("bad percent escape")
		}
		b = append(b, byte(h<<4|l))
		i += 2
	}
	return b, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// percentEncode escapes everything but RFC 3986 unreserved characters and the
// few RFC 7512 allows unescaped ('/' only in a query value).
func percentEncode(b []byte, query bool) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~:[]@!$'()*+,", c) >= 0 || query && c == '/' {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('%')
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&15])
		}
	}
	return sb.String()
}
