// Package tpm keeps identities in a TPM 2.0: each is an ECC P-256 key made
// under the owner-hierarchy "H-2" SRK and stored as a TSS2 PRIVATE KEY PEM
// file (NAME.pem) that tpm2-tools and the OpenSSL TPM2 provider also read.
// The private key never leaves the TPM; Sign runs TPM2_Sign and DH runs
// TPM2_ECDH_ZGen.
//
// Auth values. A key made with an auth value (PIN) is protected by the TPM's
// dictionary-attack logic: on the reference TPM and swtpm, 3 wrong values
// lock every such key out for 1000 s (one try comes back per interval; the
// owner of the lockout authorization can clear it, e.g. `tpm2_dictionarylockout
// -c`). Open checks the value with one signature, so a mistyped value fails
// there, with an *AuthError (keystore.ErrWrongPIN) saying how many tries are
// left (TPM_PT_MAX_AUTH_FAIL less TPM_PT_LOCKOUT_COUNTER), rather than at the
// first handshake message a stranger sends. A rejected value is wiped, its
// keyed digest kept, and it is never sent to the TPM again by this keystore
// or its identities (Config.AuthFailed tells a caller holding a copy to drop
// it). Lockout gives a *LockoutError (keystore.ErrLockedOut) with the wait.
// Values live in locked pages of their own (secret.Buffer).
//
// Storage key. The SRK is re-created by every process from the "H-2"
// template, and its public area arrives unauthenticated; an interposer on the
// bus could answer with its own key and learn every session salt. Generate
// records the SRK's name in NAME.srk next to NAME.pem (the PEM stays what
// tpm2-tools loads); Open and every use refuse another SRK with
// ErrSRKMismatch. A key file without NAME.srk (made before) records the SRK
// seen at its first open.
//
// Recovery. A keystore opened with OpenDevice, OpenSwtpm, OpenSwtpmUnix or
// OpenTransportDial reconnects when the link fails or the TPM forgot our
// handles (it restarted): the next call re-creates the storage key, the
// identity's session and its loaded key, and goes through.
//
// Bus protection. Every command carrying a secret runs in an HMAC session
// salted to the SRK: the auth value never crosses the bus (only HMACs keyed
// with the salt do), it is AES-128-CFB encrypted when a key is created, and
// the ZGen result comes back encrypted. Each identity keeps its ZGen session
// loaded while open and signs in a one-shot session: swtpm and the simulator
// have 3 session slots and no resource manager, so at most two identities
// can be in use at once there (TPM_RC_SESSION_MEMORY past that);
// /dev/tpmrm0 swaps sessions out and has no such limit. The Sign session has
// no parameter encryption: TPM2_Sign's response is not a 2B, and the auth
// value only keys the HMAC.
package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	"github.com/google/go-tpm/tpm2/transport/tcp"
	"github.com/loramesh/loramesh-core/internal/files"
	"github.com/loramesh/loramesh-core/keystore"
)

// DefaultDevice is the kernel's resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// Config says where key files live and where auth values come from.
type Config struct {
	// Dir holds the NAME.pem key files. It is created (0700) if missing.
	Dir string
	// Auth returns the auth value (PIN) of the named identity: for Generate
	// (empty: a key without auth, not dictionary-attack protected) and for
	// keys whose file says they have one. The returned slice is copied to
	// locked memory and wiped. Nil means no auth values. A value the TPM
	// rejected is never sent again: if Auth returns it once more, the
	// operation fails with an *AuthError without reaching the TPM.
	Auth func(name string) ([]byte, error)
	// AuthFailed, if set, is told when the TPM rejected the auth value of
	// the named identity, so that a caller which stores the value drops it.
	AuthFailed func(name string)
}

// Keystore is a directory of TPM key files bound to one open TPM.
type Keystore struct {
	cfg    Config
	d      *device
	failed *failedAuths
	closed atomic.Bool
}

var _ keystore.Keystore = (*Keystore)(nil)

// OpenDevice opens a TPM character device: path "" means /dev/tpmrm0.
// /dev/tpm0 works too but admits one process at a time.
func OpenDevice(path string, cfg Config) (*Keystore, error) {
	if path == "" {
		path = DefaultDevice
	}
	dial := func() (transport.TPMCloser, error) { return linuxtpm.Open(path) }
	t, err := dial()
	if err != nil {
		return nil, deviceErr(path, err)
	}
	return openTransport(t, cfg, dial, path)
}

// OpenSwtpm opens swtpm (or the reference simulator) over TCP: cmdAddr is
// the server port, platformAddr the control port (host:port each).
func OpenSwtpm(cmdAddr, platformAddr string, cfg Config) (*Keystore, error) {
	dial := func() (transport.TPMCloser, error) {
		return tcp.Open(tcp.Config{CommandAddress: cmdAddr, PlatformAddress: platformAddr})
	}
	t, err := dial()
	if err != nil {
		return nil, fmt.Errorf("%w: swtpm at %s: %v", ErrNoDevice, cmdAddr, err)
	}
	return openTransport(t, cfg, dial, "tcp:"+cmdAddr)
}

// OpenSwtpmUnix opens swtpm's Unix socket (`--server type=unixio,path=...`).
func OpenSwtpmUnix(path string, cfg Config) (*Keystore, error) {
	dial := func() (transport.TPMCloser, error) { return linuxudstpm.Open(path) }
	t, err := dial()
	if err != nil {
		return nil, deviceErr(path, err)
	}
	return openTransport(t, cfg, dial, "unix:"+path)
}

// OpenTransport uses an already open transport (for instance go-tpm's
// in-process simulator) and owns it from now on: the last Close of the
// keystore and its identities closes it. Commands carrying secrets are sent
// inside core.Protect; in GOEXPERIMENT=runtimesecret builds a transport that
// calls C there crashes the process (Go 1.26), so such a transport must hand
// the bytes (already encrypted) to another goroutine, as the tests do.
//
// Opening flushes every transient object and loaded session in the TPM (a
// TPM without resource manager, like swtpm, keeps a crashed client's
// leftovers): without a resource manager, open one Keystore per TPM at a
// time.
//
// A transport opened by OpenDevice, OpenSwtpm or OpenSwtpmUnix is reopened
// when it fails (a TPM or swtpm restart): the next call reconnects and
// re-creates the storage key, sessions and loaded keys. One handed to
// OpenTransport cannot be reopened; OpenTransportDial takes a function that
// opens it.
func OpenTransport(t transport.TPMCloser, cfg Config) (*Keystore, error) {
	return openTransport(t, cfg, nil, "transport")
}

// OpenTransportDial is OpenTransport with dial, which opens the transport
// again after a failure; where names it in errors.
func OpenTransportDial(dial func() (transport.TPMCloser, error), where string, cfg Config) (*Keystore, error) {
	t, err := dial()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoDevice, where, err)
	}
	return openTransport(t, cfg, dial, where)
}

func openTransport(t transport.TPMCloser, cfg Config, dial func() (transport.TPMCloser, error), where string) (*Keystore, error) {
	if cfg.Dir == "" {
		t.Close()
		return nil, fmt.Errorf("tpm: Config.Dir is empty: %w", keystore.ErrKeystore)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		t.Close()
		return nil, fmt.Errorf("tpm: key directory: %w (%w)", keystore.ErrKeystore, err)
	}
	d, err := newDevice(t, dial, where)
	if err != nil {
		return nil, err
	}
	if err := files.Clean(cfg.Dir); err != nil {
		d.release()
		return nil, fmt.Errorf("tpm: key directory: %w (%w)", keystore.ErrKeystore, err)
	}
	return &Keystore{cfg: cfg, d: d, failed: &failedAuths{refs: 1}}, nil
}

func deviceErr(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrNoDevice, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %s", ErrPermission, path)
	}
	return fmt.Errorf("tpm: opening %s: %w (%w)", path, keystore.ErrKeystore, err)
}

func (ks *Keystore) path(name string) string { return filepath.Join(ks.cfg.Dir, name+".pem") }

// srkPath is where the name of the storage key the identity was created
// under is recorded: hex of the TPM2B_NAME (0x000b and its SHA-256), one
// line. The PEM stays exactly what tpm2-tools loads.
func (ks *Keystore) srkPath(name string) string {
	return filepath.Join(ks.cfg.Dir, name+".srk")
}

func (ks *Keystore) readSRK(name string) ([]byte, error) {
	b, err := os.ReadFile(ks.srkPath(name))
	if err != nil {
		return nil, err
	}
	n, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(n) != 34 || n[0] != 0 || n[1] != 0x0b {
		return nil, fmt.Errorf("tpm: %s.srk: not a storage key name: %w", name, ErrBadBlob)
	}
	return n, nil
}

func (ks *Keystore) writeSRK(name string, srk []byte) error {
	return files.WriteNew(ks.srkPath(name), []byte(hex.EncodeToString(srk)+"\n"))
}

// check rejects bad names and use after Close.
func (ks *Keystore) check(name string) error {
	if ks.closed.Load() {
		return keystore.ErrClosed
	}
	return files.CheckName(name)
}

// Generate creates a P-256 identity (the only suite a TPM offers here) and
// saves its key file.
func (ks *Keystore) Generate(name string, suites ...keystore.Suite) (keystore.Identity, error) {
	if err := ks.check(name); err != nil {
		return nil, err
	}
	for _, s := range suites {
		if s != keystore.P256 {
			return nil, fmt.Errorf("tpm: %v: %w", s, keystore.ErrUnsupportedSuite)
		}
	}
	if _, err := os.Stat(ks.path(name)); err == nil {
		return nil, fmt.Errorf("tpm: %s: %w", name, keystore.ErrExists)
	}
	auth, err := ks.auth(name)
	if err != nil {
		return nil, err
	}
	hasAuth := auth.Size() > 0
	var pub tpm2.TPM2BPublic
	var priv tpm2.TPM2BPrivate
	var srkName []byte
	err = ks.d.do(func() error {
		return ks.d.withSRK(func(srk tpm2.NamedHandle) error {
			var err error
			pub, priv, err = create(ks.d, srk, auth, hasAuth)
			srkName = bytes.Clone(ks.d.srkName.Buffer)
			return err
		})
	})
	if err != nil {
		auth.Destroy()
		return nil, err
	}
	// The storage key's name first, then the key file that makes the
	// identity exist: a crash in between leaves a stray .srk, which the
	// next Generate of the name replaces.
	os.Remove(ks.srkPath(name))
	pem, err := encodeKey(pub, priv, hasAuth)
	if err == nil {
		err = ks.writeSRK(name, srkName)
	}
	if err == nil {
		if err = files.WriteNew(ks.path(name), pem); err != nil {
			os.Remove(ks.srkPath(name))
		}
	}
	if err != nil {
		auth.Destroy()
		if errors.Is(err, keystore.ErrExists) {
			return nil, fmt.Errorf("tpm: %s: %w", name, err)
		}
		return nil, fmt.Errorf("tpm: saving %s: %w (%w)", name, keystore.ErrKeystore, err)
	}
	return ks.open(name, pub, priv, hasAuth, auth, srkName, false)
}

// Open loads a saved identity. A key file from another TPM fails with
// ErrBadBlob here rather than at first use.
func (ks *Keystore) Open(name string) (keystore.Identity, error) {
	if err := ks.check(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(ks.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tpm: %s: %w", name, keystore.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("tpm: reading %s: %w (%w)", name, keystore.ErrKeystore, err)
	}
	k, err := decodeKey(b)
	if err != nil {
		return nil, fmt.Errorf("tpm: %s: %w: key file: %v", name, ErrBadBlob, err)
	}
	srk, err := ks.readSRK(name)
	tofu := errors.Is(err, fs.ErrNotExist)
	if err != nil && !tofu {
		return nil, fmt.Errorf("tpm: %s: %w", name, err)
	}
	if tofu {
		// A key file from before storage keys were recorded: trust the
		// storage key seen now, and record it for every later open.
		if err := ks.d.do(func() error { return ks.d.withSRK(func(tpm2.NamedHandle) error { return nil }) }); err != nil {
			return nil, err
		}
		ks.d.mu.Lock()
		srk = bytes.Clone(ks.d.srkName.Buffer)
		ks.d.mu.Unlock()
	}
	var auth *lockedAuth
	if !k.EmptyAuth {
		if auth, err = ks.auth(name); err != nil {
			return nil, err
		}
	}
	id, err := ks.open(name, k.Pubkey, k.Privkey, !k.EmptyAuth, auth, srk, true)
	if err != nil {
		return nil, err
	}
	if tofu {
		if err := ks.writeSRK(name, srk); err != nil && !errors.Is(err, keystore.ErrExists) {
			id.Close()
			return nil, fmt.Errorf("tpm: recording the storage key of %s: %w (%w)", name, keystore.ErrKeystore, err)
		}
	}
	return id, nil
}

// open makes the Identity, loads its key (a foreign or damaged blob fails
// here), and with verify checks the auth value with one authorized command,
// so that a wrong value fails now, with the tries left, and not at the
// first handshake message someone sends.
func (ks *Keystore) open(name string, pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate, hasAuth bool, auth *lockedAuth, srk []byte, verify bool) (keystore.Identity, error) {
	pk, err := checkPublic(pub)
	if err != nil {
		auth.Destroy()
		return nil, fmt.Errorf("tpm: %s: %w: %v", name, ErrBadBlob, err)
	}
	dhPub, err := dhPublic(pk)
	if err != nil {
		auth.Destroy()
		return nil, fmt.Errorf("tpm: %s: %w: %v", name, ErrBadBlob, err)
	}
	if err := ks.d.acquire(); err != nil {
		auth.Destroy()
		return nil, err
	}
	ks.failed.retain()
	id := &Identity{
		d: ks.d, name: name, pub: pub, priv: priv, hasAuth: hasAuth,
		ecPub: pk, dhPub: dhPub, authFn: ks.cfg.Auth, authFailed: ks.cfg.AuthFailed,
		auth: auth, failed: ks.failed, srk: srk,
	}
	ks.d.mu.Lock()
	id.gen = ks.d.gen
	ks.d.mu.Unlock()
	if auth != nil && ks.failed.seen(name, auth.Bytes()) {
		id.Close()
		return nil, &AuthError{Name: name, NotResent: true}
	}
	// Load now so a foreign or damaged blob fails at Open.
	if err := ks.d.do(func() error {
		if err := id.checkSRK(); err != nil {
			return err
		}
		h, err := id.load()
		if err == nil {
			ks.d.flush(h.Handle)
		}
		return err
	}); err != nil {
		id.Close()
		return nil, err
	}
	if verify && hasAuth {
		if err := id.verifyAuth(); err != nil {
			id.Close()
			return nil, err
		}
	}
	return id, nil
}

func (ks *Keystore) auth(name string) (*lockedAuth, error) {
	if ks.cfg.Auth == nil {
		return nil, nil
	}
	return newLockedAuth(ks.cfg.Auth, name)
}

// List returns the names of the saved identities, sorted.
func (ks *Keystore) List() ([]string, error) {
	if ks.closed.Load() {
		return nil, keystore.ErrClosed
	}
	es, err := os.ReadDir(ks.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("tpm: listing keys: %w (%w)", keystore.ErrKeystore, err)
	}
	var names []string
	for _, e := range es {
		n, ok := strings.CutSuffix(e.Name(), ".pem")
		if ok && e.Type().IsRegular() && files.CheckName(n) == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Delete removes the key file and its storage key record. The TPM holds
// nothing persistent for it.
func (ks *Keystore) Delete(name string) error {
	if err := ks.check(name); err != nil {
		return err
	}
	err := files.Remove(ks.path(name))
	os.Remove(ks.srkPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tpm: %s: %w", name, keystore.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("tpm: deleting %s: %w (%w)", name, keystore.ErrKeystore, err)
	}
	return nil
}

// Close releases the keystore's hold on the TPM. Open identities keep
// working until they are closed too.
func (ks *Keystore) Close() error {
	if ks == nil || ks.closed.Swap(true) {
		return nil
	}
	ks.failed.release()
	err := ks.d.release()
	collect()
	return err
}

// identityTemplate is an unrestricted P-256 key that both signs and does
// ECDH, with every scheme left to the command (TPM2_Sign passes ECDSA-SHA256).
func identityTemplate(hasAuth bool) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                !hasAuth,
			SignEncrypt:         true,
			Decrypt:             true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// create makes the key under srk. The auth value is a parameter of
// TPM2_Create, so it travels AES-CFB encrypted in a session salted to srk.
func create(d *device, srk tpm2.NamedHandle, auth *lockedAuth, hasAuth bool) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	var pub tpm2.TPM2BPublic
	var priv tpm2.TPM2BPrivate
	var err error
	protect(func() {
		var rsp *tpm2.CreateResponse
		rsp, err = tpm2.Create{
			ParentHandle: tpm2.AuthHandle{
				Handle: srk.Handle, Name: srk.Name,
				Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16,
					tpm2.AESEncryption(128, tpm2.EncryptIn),
					tpm2.Salted(srk.Handle, d.srkPub)),
			},
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
				UserAuth: tpm2.TPM2BAuth{Buffer: auth.Bytes()},
			}},
			InPublic: tpm2.New2B(identityTemplate(hasAuth)),
		}.Execute(d.t)
		if err == nil {
			pub, priv = rsp.OutPublic, rsp.OutPrivate
		}
	})
	if err != nil {
		return pub, priv, classify("creating the identity key", err)
	}
	return pub, priv, nil
}

// checkPublic accepts only the key shape identityTemplate makes.
func checkPublic(b tpm2.TPM2BPublic) (*ecdsa.PublicKey, error) {
	p, err := b.Contents()
	if err != nil {
		return nil, err
	}
	// The shape identityTemplate makes, whatever the auth: a key born in
	// this TPM (SensitiveDataOrigin) that cannot leave it (FixedTPM,
	// FixedParent), so an imported or duplicable key file is refused.
	a := p.ObjectAttributes
	if p.Type != tpm2.TPMAlgECC || p.NameAlg != tpm2.TPMAlgSHA256 || a.Restricted || !a.SignEncrypt || !a.Decrypt ||
		!a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, errors.New("not a TPM-born, non-duplicable, unrestricted ECC sign+decrypt key")
	}
	parms, err := p.Parameters.ECCDetail()
	if err != nil {
		return nil, err
	}
	if parms.CurveID != tpm2.TPMECCNistP256 || parms.Scheme.Scheme != tpm2.TPMAlgNull ||
		parms.KDF.Scheme != tpm2.TPMAlgNull || parms.Symmetric.Algorithm != tpm2.TPMAlgNull {
		return nil, errors.New("not a P-256 key with null scheme, KDF and symmetric")
	}
	pt, err := p.Unique.ECC()
	if err != nil {
		return nil, err
	}
	return ecdsaPublic(pt)
}
