//go:build js && wasm

package webcrypto

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"

	"syscall/js"

	"github.com/loramesh/loramesh-core/internal/files"
	"github.com/loramesh/loramesh-core/internal/jsutil"
	"github.com/loramesh/loramesh-core/keystore"
)

// DefaultDB is the IndexedDB database identities are kept in.
const DefaultDB = "loramesh-keys"

const storeName = "identities"

// Options configure a Keystore.
type Options struct {
	// DB names the IndexedDB database (DefaultDB when empty).
	DB string
	// PRF, when set, makes Generate protect new identities with a FIDO2
	// security key (ProtectPRF); nil stores the CryptoKeys (ProtectNone).
	// Open follows whatever protection the identity was created with.
	PRF *PRFOptions
}

// Keystore keeps identities in IndexedDB (see the package documentation
// for what each protection means on disk).
type Keystore struct {
	mu     sync.Mutex
	db     *jsutil.DB
	opts   Options
	closed bool
}

var _ keystore.Keystore = (*Keystore)(nil)

// Open opens the browser's keystore.
func Open(opts Options) (*Keystore, error) {
	if opts.DB == "" {
		opts.DB = DefaultDB
	}
	db, err := jsutil.OpenDB(opts.DB, storeName)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w: %v", keystore.ErrKeystore, err)
	}
	return &Keystore{db: db, opts: opts}, nil
}

func (k *Keystore) check(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return keystore.ErrClosed
	}
	return files.CheckName(name)
}

// Generate makes and stores a new identity. suites are the DH keys it
// holds: none means X25519 (where the browser has it) and P-256; signing
// is Ed25519 when X25519 is among them and the browser has Ed25519, ECDSA
// P-256 otherwise. With Options.PRF the security key is asked to create a
// credential (touch, maybe PIN) and the keys are stored only wrapped.
func (k *Keystore) Generate(name string, suites ...keystore.Suite) (keystore.Identity, error) {
	if err := k.check(name); err != nil {
		return nil, fmt.Errorf("generate %s: %w", name, err)
	}
	if v, err := k.db.Get(name); err != nil {
		return nil, fmt.Errorf("generate %s: %w: %v", name, keystore.ErrKeystore, err)
	} else if !v.IsUndefined() {
		return nil, fmt.Errorf("generate %s: %w", name, keystore.ErrExists)
	}
	sigAlg, dh, err := plan(suites)
	if err != nil {
		return nil, err
	}
	var id *Identity
	var stored map[string]any
	if k.opts.PRF == nil {
		id, stored, err = generatePlain(name, sigAlg, dh)
	} else {
		id, stored, err = generateWrapped(*k.opts.PRF, name, sigAlg, dh)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", name, err)
	}
	if err := k.db.Add(name, stored); err != nil {
		id.Close()
		if jsutil.Name(err) == "ConstraintError" {
			return nil, fmt.Errorf("generate %s: %w", name, keystore.ErrExists)
		}
		return nil, fmt.Errorf("generate %s: storing: %w: %v", name, keystore.ErrKeystore, err)
	}
	return id, nil
}

func generatePlain(name string, sigAlg int, dh []keystore.Suite) (*Identity, map[string]any, error) {
	kp, err := generatePairs(sigAlg, dh, false)
	if err != nil {
		return nil, nil, err
	}
	r, err := newRecord(name, sigAlg, kp)
	if err != nil {
		return nil, nil, err
	}
	id, err := fromKeys(r, kp.private())
	if err != nil {
		return nil, nil, err
	}
	keys := map[string]any{}
	for role, v := range kp.private() {
		keys[fmt.Sprint(role)] = v
	}
	return id, map[string]any{"record": jsutil.U8(r.encode()), "keys": keys}, nil
}

// generateWrapped creates the credential, generates extractable keys only
// to wrap them, and returns an identity of the same keys unwrapped as
// non-extractable ones: the extractable originals are dropped at once
// (JavaScript's collector frees them; nothing can overwrite them).
func generateWrapped(opts PRFOptions, name string, sigAlg int, dh []keystore.Suite) (*Identity, map[string]any, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, nil, err
	}
	cred, kek, err := prfCreate(opts, name, salt)
	if err != nil {
		return nil, nil, err
	}
	kp, err := generatePairs(sigAlg, dh, true)
	if err != nil {
		return nil, nil, err
	}
	r, err := newRecord(name, sigAlg, kp)
	if err != nil {
		return nil, nil, err
	}
	r.Protect, r.Cred, r.Salt, r.Wrapped = ProtectPRF, cred, salt, map[uint8][]byte{}
	for role, pair := range kp {
		if r.Wrapped[role], err = wrap(kek, pair.Get("privateKey"), name, role, r.pub(role)); err != nil {
			return nil, nil, err
		}
	}
	kp = nil
	if _, err := parseRecord(r.encode()); err != nil {
		return nil, nil, err
	}
	id, err := unwrapAll(kek, r)
	if err != nil {
		return nil, nil, err
	}
	return id, map[string]any{"record": jsutil.U8(r.encode())}, nil
}

// Open opens a stored identity; one protected by a security key asks it
// to evaluate its PRF (touch, maybe PIN).
func (k *Keystore) Open(name string) (keystore.Identity, error) {
	if err := k.check(name); err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	r, v, err := k.load(name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	var id *Identity
	switch r.Protect {
	case ProtectNone:
		keys := v.Get("keys")
		if keys.Type() != js.TypeObject {
			return nil, fmt.Errorf("open %s: %w: no keys", name, ErrRecord)
		}
		priv := map[uint8]js.Value{}
		for _, role := range append([]uint8{roleSign}, r.roles()...) {
			if kv := keys.Get(fmt.Sprint(role)); !kv.IsUndefined() {
				priv[role] = kv
			}
		}
		id, err = fromKeys(r, priv)
	case ProtectPRF:
		opts := PRFOptions{}
		if k.opts.PRF != nil {
			opts = *k.opts.PRF
		}
		var kek js.Value
		if kek, err = prfGet(opts, r.Cred, r.Salt, name); err == nil {
			id, err = unwrapAll(kek, r)
		}
	}
	if err == nil {
		err = id.checkKeys()
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return id, nil
}

// checkKeys proves that each stored public key belongs to its private key
// (the record and the CryptoKeys are stored apart): each DH key derives its
// own public key from the base point, and the signing key signs a probe
// (SignMessage verifies what it signs). Three WebCrypto calls at Open.
func (id *Identity) checkKeys() error {
	for s, k := range id.dh {
		var got [32]byte
		base := x25519Base
		if s == keystore.P256 {
			base = p256Base
		}
		bp, err := keystore.ParsePublicKey(s, base)
		if err == nil {
			err = id.DH(bp, &got)
		}
		want := k.pub.Bytes()
		if s == keystore.P256 {
			want = want[1:] // P-256 DH gives the x-coordinate only
		}
		if err != nil || !bytes.Equal(got[:], want) {
			return fmt.Errorf("%w: the stored %v public key is not its private key's", ErrRecord, s)
		}
	}
	if _, err := id.SignMessage(nil, []byte("loramesh key check"), id.signOpts()); err != nil {
		return fmt.Errorf("%w: the stored signing key is not its private key's: %v", ErrRecord, err)
	}
	return nil
}

var (
	x25519Base = append([]byte{9}, make([]byte, 31)...)
	p256Base   = elliptic.MarshalCompressed(elliptic.P256(), elliptic.P256().Params().Gx, elliptic.P256().Params().Gy)
)

// Protection reports how a stored identity is protected, without opening
// it (a page tells its user whether the security key will be needed).
func (k *Keystore) Protection(name string) (Protection, error) {
	if err := k.check(name); err != nil {
		return 0, err
	}
	r, _, err := k.load(name)
	if err != nil {
		return 0, err
	}
	return r.Protect, nil
}

func (k *Keystore) load(name string) (*record, js.Value, error) {
	v, err := k.db.Get(name)
	if err != nil {
		return nil, v, fmt.Errorf("%w: %v", keystore.ErrKeystore, err)
	}
	if v.IsUndefined() {
		return nil, v, keystore.ErrNotFound
	}
	if v.Type() != js.TypeObject {
		return nil, v, fmt.Errorf("%w: not an object", ErrRecord)
	}
	b, err := jsutil.Bytes(v.Get("record"))
	if err != nil {
		return nil, v, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	r, err := parseRecord(b)
	if err != nil {
		return nil, v, err
	}
	if r.Name != name {
		return nil, v, fmt.Errorf("%w: stored under another name", ErrRecord)
	}
	return r, v, nil
}

// List returns the stored identities' names, sorted.
func (k *Keystore) List() ([]string, error) {
	if err := k.check("x"); err != nil {
		return nil, err
	}
	names, err := k.db.Keys()
	if err != nil {
		return nil, fmt.Errorf("list: %w: %v", keystore.ErrKeystore, err)
	}
	slices.Sort(names)
	return names, nil
}

// Delete removes a stored identity. Its security-key credential, if any,
// stays on the key (browsers offer no way to remove it).
func (k *Keystore) Delete(name string) error {
	if err := k.check(name); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if v, err := k.db.Get(name); err != nil {
		return fmt.Errorf("delete %s: %w: %v", name, keystore.ErrKeystore, err)
	} else if v.IsUndefined() {
		return fmt.Errorf("delete %s: %w", name, keystore.ErrNotFound)
	}
	if err := k.db.Delete(name); err != nil {
		return fmt.Errorf("delete %s: %w: %v", name, keystore.ErrKeystore, err)
	}
	return nil
}

// Close closes the database; open identities stay usable.
func (k *Keystore) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.closed = true
		k.db.Close()
	}
	return nil
}

// roles lists the DH roles of the record.
func (r *record) roles() []uint8 {
	var out []uint8
	for _, s := range r.suites() {
		out = append(out, uint8(s))
	}
	return out
}

// pub is the wire form of a role's public key.
func (r *record) pub(role uint8) []byte {
	if role == roleSign {
		return r.SignPub
	}
	return r.DH[role]
}

// keyAlg is the WebCrypto algorithm and usages of a role's private key.
func (r *record) keyAlg(role uint8) (map[string]any, []any) {
	if role == roleSign {
		return sigAlgParams(r.SigAlg), signUsage
	}
	return dhAlg(keystore.Suite(role)), dhUsage
}

func wrap(kek, priv js.Value, name string, role uint8, pub []byte) ([]byte, error) {
	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	p := map[string]any{"name": "AES-GCM", "iv": jsutil.U8(iv), "additionalData": jsutil.U8(wrapAAD(name, role, pub))}
	v, err := jsutil.Call(subtle(), "wrapKey", "pkcs8", priv, kek, p)
	if err != nil {
		return nil, fmt.Errorf("wrapping key %d: %w", role, webErr(err))
	}
	ct, err := jsutil.Bytes(v)
	if err != nil {
		return nil, err
	}
	return append(iv, ct...), nil
}

// unwrapAll unwraps every key of r as a non-extractable CryptoKey.
func unwrapAll(kek js.Value, r *record) (*Identity, error) {
	priv := map[uint8]js.Value{}
	for role, w := range r.Wrapped {
		alg, usages := r.keyAlg(role)
		p := map[string]any{"name": "AES-GCM", "iv": jsutil.U8(w[:ivSize]), "additionalData": jsutil.U8(wrapAAD(r.Name, role, r.pub(role)))}
		v, err := jsutil.Call(subtle(), "unwrapKey", "pkcs8", jsutil.U8(w[ivSize:]), kek, p, alg, false, usages)
		if err != nil {
			if jsutil.Name(err) == "OperationError" {
				return nil, ErrUnwrap
			}
			return nil, fmt.Errorf("unwrapping key %d: %w", role, webErr(err))
		}
		priv[role] = v
	}
	return fromKeys(r, priv)
}

var errNoWebAuthn = errors.New("WebAuthn is not available here")
