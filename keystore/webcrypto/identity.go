//go:build js && wasm

package webcrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"

	"syscall/js"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/jsutil"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Identity is an identity whose private keys are non-extractable
// WebCrypto keys. Go holds only references to them (js.Value); every
// private-key operation is a WebCrypto call.
type Identity struct {
	mu      sync.Mutex
	closed  bool
	sign    js.Value // private CryptoKey: Ed25519 or ECDSA P-256
	sigAlg  int      // core.SigEd25519 or core.SigECDSAP256
	signPub core.SigningKey
	dh      map[keystore.Suite]dhKey
	protect Protection
	ops     atomic.Uint64
}

type dhKey struct {
	priv js.Value // private CryptoKey (X25519 or ECDH P-256), deriveBits only
	pub  keystore.PublicKey
}

var (
	_ keystore.Identity    = (*Identity)(nil)
	_ crypto.MessageSigner = (*Identity)(nil)
	_ keystore.OpCounter   = (*Identity)(nil)
)

func subtle() js.Value { return js.Global().Get("crypto").Get("subtle") }

// algorithm parameters, as WebCrypto names them.
var (
	algEd25519 = map[string]any{"name": "Ed25519"}
	algECDSA   = map[string]any{"name": "ECDSA", "namedCurve": "P-256"}
	algX25519  = map[string]any{"name": "X25519"}
	algECDH    = map[string]any{"name": "ECDH", "namedCurve": "P-256"}
	signUsage  = []any{"sign"}
	dhUsage    = []any{"deriveBits"}
)

func dhAlg(s keystore.Suite) map[string]any {
	if s == keystore.X25519 {
		return algX25519
	}
	return algECDH
}

func sigAlgParams(alg int) map[string]any {
	if alg == core.SigEd25519 {
		return algEd25519
	}
	return algECDSA
}

// supported caches which optional algorithms this host's WebCrypto has.
var supported struct {
	once            sync.Once
	ed25519, x25519 bool
}

func probe() {
	supported.once.Do(func() {
		_, err := jsutil.Call(subtle(), "generateKey", algEd25519, false, []any{"sign", "verify"})
		supported.ed25519 = err == nil
		_, err = jsutil.Call(subtle(), "generateKey", algX25519, false, []any{"deriveBits"})
		supported.x25519 = err == nil
	})
}

// HasCurve25519 reports whether this browser's WebCrypto has Ed25519 and
// X25519 (Chromium 137+, Firefox 130+, Safari 17+, node 20). The first call
// awaits WebCrypto: not from a js.FuncOf handler.
func HasCurve25519() bool {
	probe()
	return supported.ed25519 && supported.x25519
}

// plan decides the keys of a new identity: the DH suites asked for (all
// the browser has when none), and Ed25519 signing when X25519 is among them
// and the browser has it, ECDSA P-256 otherwise.
func plan(suites []keystore.Suite) (sigAlg int, dh []keystore.Suite, err error) {
	probe()
	if len(suites) == 0 {
		if supported.x25519 {
			suites = append(suites, keystore.X25519)
		}
		suites = append(suites, keystore.P256)
	}
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if slices.Contains(suites, s) {
			dh = append(dh, s)
		}
	}
	for _, s := range suites {
		if s != keystore.X25519 && s != keystore.P256 {
			return 0, nil, fmt.Errorf("generate: %v: %w", s, keystore.ErrUnsupportedSuite)
		}
		if s == keystore.X25519 && !supported.x25519 {
			return 0, nil, fmt.Errorf("generate: X25519: %w", ErrUnsupported)
		}
	}
	sigAlg = core.SigECDSAP256
	if slices.Contains(dh, keystore.X25519) && supported.ed25519 {
		sigAlg = core.SigEd25519
	}
	return sigAlg, dh, nil
}

// keyPairs holds freshly generated CryptoKeyPairs by role.
type keyPairs map[uint8]js.Value

func generatePairs(sigAlg int, dh []keystore.Suite, extractable bool) (keyPairs, error) {
	kp := keyPairs{}
	v, err := jsutil.Call(subtle(), "generateKey", sigAlgParams(sigAlg), extractable, []any{"sign", "verify"})
	if err != nil {
		return nil, fmt.Errorf("generating the signing key: %w", webErr(err))
	}
	kp[roleSign] = v
	for _, s := range dh {
		v, err := jsutil.Call(subtle(), "generateKey", dhAlg(s), extractable, dhUsage)
		if err != nil {
			return nil, fmt.Errorf("generating the %v key: %w", s, webErr(err))
		}
		kp[uint8(s)] = v
	}
	return kp, nil
}

// rawPublic exports a public CryptoKey: 32 bytes for the 25519 curves, the
// 65-byte uncompressed point for P-256.
func rawPublic(pub js.Value) ([]byte, error) {
	v, err := jsutil.Call(subtle(), "exportKey", "raw", pub)
	if err != nil {
		return nil, webErr(err)
	}
	return jsutil.Bytes(v)
}

func compress(u []byte) ([]byte, error) {
	x, y := elliptic.Unmarshal(elliptic.P256(), u)
	if x == nil {
		return nil, fmt.Errorf("%w: public key is not a P-256 point", keystore.ErrKeystore)
	}
	return elliptic.MarshalCompressed(elliptic.P256(), x, y), nil
}

// newRecord describes generated key pairs (public halves only).
func newRecord(name string, sigAlg int, kp keyPairs) (*record, error) {
	r := &record{Version: recordVersion, Name: name, SigAlg: sigAlg, DH: map[uint8][]byte{}, Protect: ProtectNone}
	for role, pair := range kp {
		b, err := rawPublic(pair.Get("publicKey"))
		if err != nil {
			return nil, err
		}
		if len(b) == 65 {
			if b, err = compress(b); err != nil {
				return nil, err
			}
		}
		if role == roleSign {
			r.SignPub = b
		} else {
			r.DH[role] = b
		}
	}
	return r, nil
}

// fromKeys makes an Identity of a record's public keys and the private
// CryptoKeys by role.
func fromKeys(r *record, priv map[uint8]js.Value) (*Identity, error) {
	sk, err := core.ParseSigningKey(r.SignPub)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: %v", ErrRecord, err)
	}
	id := &Identity{sign: priv[roleSign], sigAlg: r.SigAlg, signPub: sk, dh: map[keystore.Suite]dhKey{}, protect: r.Protect}
	for _, s := range r.suites() {
		pub, err := keystore.ParsePublicKey(s, r.DH[uint8(s)])
		if err != nil {
			return nil, fmt.Errorf("%w: %v key: %v", ErrRecord, s, err)
		}
		id.dh[s] = dhKey{priv: priv[uint8(s)], pub: pub}
	}
	for role, k := range priv {
		if k.Type() != js.TypeObject || k.Get("type").String() != "private" {
			return nil, fmt.Errorf("%w: key %d is not a private CryptoKey", ErrRecord, role)
		}
	}
	if len(priv) != len(r.DH)+1 {
		return nil, fmt.Errorf("%w: %d private keys for %d roles", ErrRecord, len(priv), len(r.DH)+1)
	}
	return id, nil
}

// Generate makes an identity of new non-extractable WebCrypto keys that is
// not stored anywhere (tests, and what the Keystore starts from). suites
// as in Keystore.Generate.
func Generate(suites ...keystore.Suite) (*Identity, error) {
	sigAlg, dh, err := plan(suites)
	if err != nil {
		return nil, err
	}
	kp, err := generatePairs(sigAlg, dh, false)
	if err != nil {
		return nil, err
	}
	r, err := newRecord("unsaved", sigAlg, kp)
	if err != nil {
		return nil, err
	}
	return fromKeys(r, kp.private())
}

func (kp keyPairs) private() map[uint8]js.Value {
	m := map[uint8]js.Value{}
	for role, pair := range kp {
		m[role] = pair.Get("privateKey")
	}
	return m
}

// Protection says how the identity's keys are stored.
func (id *Identity) Protection() Protection { return id.protect }

// Public returns the signing key: ed25519.PublicKey or *ecdsa.PublicKey.
func (id *Identity) Public() crypto.PublicKey { return id.signPub.Public() }

// Suites lists the DH suites, X25519 first.
func (id *Identity) Suites() []keystore.Suite {
	var out []keystore.Suite
	for _, s := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if _, ok := id.dh[s]; ok {
			out = append(out, s)
		}
	}
	return out
}

// DHPublic returns the static DH public key of suite s.
func (id *Identity) DHPublic(s keystore.Suite) (keystore.PublicKey, error) {
	k, ok := id.dh[s]
	if !ok {
		return keystore.PublicKey{}, fmt.Errorf("DH public key: %v: %w", s, keystore.ErrUnsupportedSuite)
	}
	return k.pub, nil
}

func (id *Identity) key(role uint8) (js.Value, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.closed {
		return js.Value{}, keystore.ErrClosed
	}
	if role == roleSign {
		return id.sign, nil
	}
	k, ok := id.dh[keystore.Suite(role)]
	if !ok {
		return js.Value{}, keystore.ErrUnsupportedSuite
	}
	return k.priv, nil
}

// DH derives the shared secret with peer in WebCrypto and copies it into
// out; the ArrayBuffer WebCrypto returned is overwritten with zeros. An
// all-zero result (a low-order X25519 point; WebCrypto refuses those
// itself) and a peer key WebCrypto will not import are ErrInvalidPublicKey.
func (id *Identity) DH(peer keystore.PublicKey, out *[32]byte) error {
	priv, err := id.key(uint8(peer.Suite()))
	if err != nil {
		return fmt.Errorf("DH: %w", err)
	}
	raw := peer.Bytes()
	if peer.Suite() == keystore.P256 {
		raw = peer.Uncompressed() // every browser imports uncompressed points
	}
	pk, err := jsutil.Call(subtle(), "importKey", "raw", jsutil.U8(raw), dhAlg(peer.Suite()), true, []any{})
	if err != nil {
		return fmt.Errorf("DH: importing the peer key: %w", badPeer(err))
	}
	params := map[string]any{"name": dhAlg(peer.Suite())["name"], "public": pk}
	buf, err := jsutil.Call(subtle(), "deriveBits", params, priv, 256)
	if err != nil {
		return fmt.Errorf("DH: %w", badPeer(err))
	}
	id.ops.Add(1)
	if err := jsutil.BytesInto(out[:], buf); err != nil {
		secret.Wipe(out[:])
		return fmt.Errorf("DH: %w: %v", keystore.ErrKeystore, err)
	}
	if secret.IsZero(out[:]) {
		return fmt.Errorf("DH: all-zero result: %w", keystore.ErrInvalidPublicKey)
	}
	return nil
}

// badPeer maps WebCrypto's refusals of a peer key (DataError on import,
// OperationError for a low-order point) to ErrInvalidPublicKey.
func badPeer(err error) error {
	switch jsutil.Name(err) {
	case "DataError", "OperationError":
		return fmt.Errorf("%w: %v", keystore.ErrInvalidPublicKey, err)
	}
	return webErr(err)
}

func webErr(err error) error {
	if jsutil.Name(err) == "NotSupportedError" {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: WebCrypto: %v", keystore.ErrKeystore, err)
}

// Sign signs an Ed25519 message (opts crypto.Hash(0)). An ECDSA identity
// cannot sign a digest (ErrDigest): WebCrypto hashes what it signs; use
// crypto.SignMessage, as the core does.
func (id *Identity) Sign(r io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if id.sigAlg != core.SigEd25519 {
		return nil, fmt.Errorf("sign: %w", ErrDigest)
	}
	return id.SignMessage(r, message, opts)
}

// SignMessage signs msg: Ed25519 (opts crypto.Hash(0)) or ECDSA P-256 over
// SHA-256 of msg (opts crypto.SHA256), returned in ASN.1 DER as
// crypto.Signer callers expect.
func (id *Identity) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != id.signOpts().HashFunc() {
		return nil, fmt.Errorf("sign: hash %v for a %s key: %w", opts.HashFunc(), map[int]string{core.SigEd25519: "Ed25519", core.SigECDSAP256: "ECDSA P-256"}[id.sigAlg], keystore.ErrKeystore)
	}
	key, err := id.key(roleSign)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	params := map[string]any{"name": sigAlgParams(id.sigAlg)["name"]}
	if id.sigAlg == core.SigECDSAP256 {
		params["hash"] = "SHA-256"
	}
	v, err := jsutil.Call(subtle(), "sign", params, key, jsutil.U8(msg))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", webErr(err))
	}
	id.ops.Add(1)
	sig, err := jsutil.Bytes(v)
	if err != nil || len(sig) != 64 {
		return nil, fmt.Errorf("sign: %w: WebCrypto returned %d bytes", keystore.ErrKeystore, len(sig))
	}
	if id.sigAlg == core.SigEd25519 {
		if !ed25519.Verify(id.signPub.Public().(ed25519.PublicKey), msg, sig) {
			return nil, fmt.Errorf("sign: %w: WebCrypto's signature does not verify", keystore.ErrKeystore)
		}
		return sig, nil
	}
	der := derSignature(sig)
	if !ecdsa.VerifyASN1(id.signPub.Public().(*ecdsa.PublicKey), sha256Sum(msg), der) {
		return nil, fmt.Errorf("sign: %w: WebCrypto's signature does not verify", keystore.ErrKeystore)
	}
	return der, nil
}

func sha256Sum(b []byte) []byte {
	d := sha256.Sum256(b)
	return d[:]
}

// signOpts are the options SignMessage takes for this identity's key.
func (id *Identity) signOpts() crypto.SignerOpts {
	if id.sigAlg == core.SigECDSAP256 {
		return crypto.SHA256
	}
	return crypto.Hash(0)
}

// derSignature converts WebCrypto's raw r || s to ASN.1 DER.
func derSignature(raw []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[:32]))
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[32:]))
	})
	return b.BytesOrPanic()
}

// PrivateKeyOps counts the signatures and DH operations asked of WebCrypto.
func (id *Identity) PrivateKeyOps() uint64 { return id.ops.Load() }

// Close drops the identity's references to its keys; the browser frees
// them once nothing else refers to them (a page can hold them too, which
// Close cannot prevent).
func (id *Identity) Close() error {
	if id == nil {
		return nil
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	id.closed = true
	id.sign = js.Undefined()
	for s := range id.dh {
		id.dh[s] = dhKey{pub: id.dh[s].pub, priv: js.Undefined()}
	}
	return nil
}
