//go:build js && wasm

package webcrypto

import (
	"crypto/rand"
	"fmt"
	"time"

	"syscall/js"

	"github.com/loramesh/loramesh-core/internal/jsutil"
)

// PRFOptions tune the WebAuthn calls of ProtectPRF.
type PRFOptions struct {
	// RPName is the relying party name the authenticator may show
	// ("loramesh" when empty). The relying party ID is the page's domain:
	// WebAuthn refuses IP addresses, so serve the page as
	// http://localhost:PORT, not http://127.0.0.1:PORT.
	RPName string
	// UserVerification: "preferred" (default), "required" or "discouraged".
	UserVerification string
	// Timeout for each WebAuthn call (default two minutes).
	Timeout time.Duration
}

func (o PRFOptions) withDefaults() PRFOptions {
	if o.RPName == "" {
		o.RPName = "loramesh"
	}
	if o.UserVerification == "" {
		o.UserVerification = "preferred"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	return o
}

func credentials() (js.Value, error) {
	nav := js.Global().Get("navigator")
	if nav.IsUndefined() || nav.Get("credentials").IsUndefined() {
		return js.Value{}, fmt.Errorf("%w: %v", ErrNoPRF, errNoWebAuthn)
	}
	return nav.Get("credentials"), nil
}

func random(n int) js.Value {
	b := make([]byte, n)
	rand.Read(b)
	return jsutil.U8(b)
}

// prfCreate makes a credential on the security key and evaluates its PRF
// at salt: the credential ID and the identity's wrapping key.
func prfCreate(o PRFOptions, name string, salt []byte) ([]byte, js.Value, error) {
	o = o.withDefaults()
	creds, err := credentials()
	if err != nil {
		return nil, js.Value{}, err
	}
	opts := map[string]any{"publicKey": map[string]any{
		"rp":               map[string]any{"name": o.RPName},
		"user":             map[string]any{"id": random(16), "name": "loramesh:" + name, "displayName": name},
		"challenge":        random(32), // nothing is attested to a server: only the PRF is used
		"pubKeyCredParams": []any{map[string]any{"type": "public-key", "alg": -7}, map[string]any{"type": "public-key", "alg": -8}},
		"authenticatorSelection": map[string]any{
			"residentKey": "discouraged", "userVerification": o.UserVerification,
		},
		"timeout":    o.Timeout.Milliseconds(),
		"extensions": map[string]any{"prf": map[string]any{"eval": map[string]any{"first": jsutil.U8(salt)}}},
	}}
	cred, err := jsutil.Call(creds, "create", opts)
	if err != nil {
		return nil, js.Value{}, webAuthnErr("creating a credential", err)
	}
	id, err := jsutil.Bytes(cred.Get("rawId"))
	if err != nil || len(id) == 0 || len(id) > maxCred {
		return nil, js.Value{}, fmt.Errorf("%w: bad credential ID", ErrAuthenticator)
	}
	prf := cred.Call("getClientExtensionResults").Get("prf")
	if prf.IsUndefined() || !prf.Get("enabled").Truthy() {
		return nil, js.Value{}, fmt.Errorf("creating a credential: %w", ErrNoPRF)
	}
	var kek js.Value
	if res := prf.Get("results"); !res.IsUndefined() && !res.Get("first").IsUndefined() {
		kek, err = wrappingKey(res.Get("first"), salt, name)
	} else {
		// Some authenticators evaluate the PRF only in an assertion.
		kek, err = prfGet(o, id, salt, name)
	}
	if err != nil {
		return nil, js.Value{}, err
	}
	return id, kek, nil
}

// prfGet asks the security key holding credential cred to evaluate its PRF
// at salt, and derives the identity's wrapping key.
func prfGet(o PRFOptions, cred, salt []byte, name string) (js.Value, error) {
	o = o.withDefaults()
	creds, err := credentials()
	if err != nil {
		return js.Value{}, err
	}
	opts := map[string]any{"publicKey": map[string]any{
		"challenge":        random(32),
		"allowCredentials": []any{map[string]any{"type": "public-key", "id": jsutil.U8(cred)}},
		"userVerification": o.UserVerification,
		"timeout":          o.Timeout.Milliseconds(),
		"extensions":       map[string]any{"prf": map[string]any{"eval": map[string]any{"first": jsutil.U8(salt)}}},
	}}
	a, err := jsutil.Call(creds, "get", opts)
	if err != nil {
		return js.Value{}, webAuthnErr("asking the security key", err)
	}
	prf := a.Call("getClientExtensionResults").Get("prf")
	if prf.IsUndefined() || prf.Get("results").IsUndefined() || prf.Get("results").Get("first").IsUndefined() {
		return js.Value{}, fmt.Errorf("asking the security key: %w", ErrNoPRF)
	}
	return wrappingKey(prf.Get("results").Get("first"), salt, name)
}

// wrappingKey imports a PRF output as HKDF key material, overwrites the
// output's buffer, and derives the identity's AES-256-GCM wrapping key
// (non-extractable). The PRF output is never copied into Go memory.
func wrappingKey(out js.Value, salt []byte, name string) (js.Value, error) {
	u := js.Global().Get("Uint8Array").New(out)
	defer u.Call("fill", 0)
	if u.Get("byteLength").Int() != 32 {
		return js.Value{}, fmt.Errorf("%w: PRF output of %d bytes", ErrNoPRF, u.Get("byteLength").Int())
	}
	ikm, err := jsutil.Call(subtle(), "importKey", "raw", u, "HKDF", false, []any{"deriveKey"})
	if err != nil {
		return js.Value{}, webErr(err)
	}
	p := map[string]any{"name": "HKDF", "hash": "SHA-256", "salt": jsutil.U8(salt), "info": jsutil.U8(hkdfInfo(name))}
	kek, err := jsutil.Call(subtle(), "deriveKey", p, ikm,
		map[string]any{"name": "AES-GCM", "length": 256}, false, []any{"wrapKey", "unwrapKey"})
	if err != nil {
		return js.Value{}, webErr(err)
	}
	return kek, nil
}

func webAuthnErr(step string, err error) error {
	switch jsutil.Name(err) {
	case "NotAllowedError", "AbortError", "InvalidStateError":
		return fmt.Errorf("%s: %w (%v)", step, ErrAuthenticator, err)
	case "SecurityError":
		return fmt.Errorf("%s: %w: WebAuthn refuses this page's origin; serve it from a domain such as localhost, not an IP address (%v)", step, ErrNoPRF, err)
	case "NotSupportedError":
		return fmt.Errorf("%s: %w (%v)", step, ErrNoPRF, err)
	}
	return fmt.Errorf("%s: %w: %v", step, ErrAuthenticator, err)
}
