package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"runtime"
	"sync/atomic"

	"github.com/google/go-tpm/tpm2"
	"github.com/loramesh/loramesh-core/internal/prim"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Identity is a P-256 key held by the TPM. Its fields other than ops are
// guarded by d.mu.
type Identity struct {
	d       *device
	name    string
	pub     tpm2.TPM2BPublic
	priv    tpm2.TPM2BPrivate
	hasAuth bool
	ecPub   *ecdsa.PublicKey
	dhPub   keystore.PublicKey

	authFn     func(string) ([]byte, error)
	authFailed func(string)
	auth       *lockedAuth       // nil until first needed; dropped on auth failure
	failed     *failedAuths      // values the TPM rejected, never offered again
	srk        []byte            // the storage key's name recorded at creation
	gen        uint64            // the device generation ctx and dhS belong to
	ctx        *tpm2.TPMSContext // saved context of the loaded key
	dhS        *session          // salted, response-encrypting, kept for ZGen
	ops        atomic.Uint64
	closed     bool
}

var (
	_ keystore.Identity  = (*Identity)(nil)
	_ keystore.OpCounter = (*Identity)(nil)
	_ crypto.Signer      = (*Identity)(nil)
)

// session is a reusable HMAC session and its closer.
type session struct {
	s     tpm2.Session
	close func() error
}

// Name is the identity's name in the keystore.
func (id *Identity) Name() string { return id.name }

// Public returns the *ecdsa.PublicKey, read from the key file at open.
func (id *Identity) Public() crypto.PublicKey { return id.ecPub }

// Suites reports P-256 only.
func (id *Identity) Suites() []keystore.Suite { return []keystore.Suite{keystore.P256} }

// DHPublic returns the compressed P-256 public key.
func (id *Identity) DHPublic(s keystore.Suite) (keystore.PublicKey, error) {
	if s != keystore.P256 {
		return keystore.PublicKey{}, fmt.Errorf("tpm: %v: %w", s, keystore.ErrUnsupportedSuite)
	}
	return id.dhPub, nil
}

// PrivateKeyOps counts TPM2_Sign and TPM2_ECDH_ZGen commands sent.
func (id *Identity) PrivateKeyOps() uint64 { return id.ops.Load() }

// Sign signs a SHA-256 digest with ECDSA and returns an ASN.1 DER signature,
// as crypto/ecdsa does. Other hashes are refused: the key's use is fixed.
func (id *Identity) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("tpm: sign: only SHA-256 digests: %w", keystore.ErrKeystore)
	}
	if len(digest) != 32 {
		return nil, fmt.Errorf("tpm: sign: digest is %d bytes, want 32: %w", len(digest), keystore.ErrKeystore)
	}
	id.ops.Add(1)
	return id.sign(digest, "sign")
}

// sign runs TPM2_Sign on a SHA-256 digest in a one-shot session (an
// identity keeps only its ZGen session loaded, since swtpm and the
// simulator have three session slots in all) and returns the DER signature.
func (id *Identity) sign(digest []byte, step string) ([]byte, error) {
	var sig *tpm2.SignResponse
	err := id.withKey(nil, false, func(key tpm2.AuthHandle) (err error) {
		// go-tpm builds the HMAC key (session key || auth value) on the heap.
		protect(func() {
			sig, err = tpm2.Sign{
				KeyHandle: key,
				Digest:    tpm2.TPM2BDigest{Buffer: digest},
				InScheme: tpm2.TPMTSigScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
				},
				Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
			}.Execute(id.d.t)
		})
		return err
	})
	if err != nil {
		return nil, classify(step, err)
	}
	e, err := sig.Signature.Signature.ECDSA()
	if err != nil {
		return nil, classify(step, err)
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(e.SignatureR.Buffer))
		b.AddASN1BigInt(new(big.Int).SetBytes(e.SignatureS.Buffer))
	})
	return b.Bytes()
}

// DH runs TPM2_ECDH_ZGen with peer and writes the x-coordinate of the shared
// point to out. The point crosses the bus encrypted.
func (id *Identity) DH(peer keystore.PublicKey, out *[32]byte) error {
	switch peer.Suite() {
	case keystore.P256:
	case 0:
		return fmt.Errorf("tpm: dh: %w", keystore.ErrInvalidPublicKey)
	default:
		return fmt.Errorf("tpm: dh: %v: %w", peer.Suite(), keystore.ErrUnsupportedSuite)
	}
	// PublicKey is validated: an on-curve point, decompressed at parse.
	u := peer.Uncompressed()
	in := tpm2.New2B(tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: u[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: u[33:65]},
	})
	var zero bool
	id.ops.Add(1)
	err := id.withKey(&id.dhS, true, func(key tpm2.AuthHandle) (err error) {
		protect(func() { err = id.zgen(key, in, out, &zero) })
		return err
	})
	if err != nil {
		secret.Wipe(out[:])
		return classify("dh", err)
	}
	if zero {
		return fmt.Errorf("tpm: dh: %w", prim.ErrZero)
	}
	return nil
}

// zgen runs TPM2_ECDH_ZGen and copies X to out. Its caller runs it inside
// core.Protect: the session HMAC key and the decrypted response are heap
// temporaries of go-tpm.
func (id *Identity) zgen(key tpm2.AuthHandle, in tpm2.TPM2BECCPoint, out *[32]byte, zero *bool) error {
	rsp, err := tpm2.ECDHZGen{KeyHandle: key, InPoint: in}.Execute(id.d.t)
	if err != nil {
		return err
	}
	z, err := rsp.OutPoint.Contents()
	if err != nil {
		return err
	}
	defer secret.Wipe(z.X.Buffer)
	defer secret.Wipe(z.Y.Buffer)
	if len(z.X.Buffer) > 32 {
		return errors.New("ZGen returned an oversized coordinate")
	}
	// Right-align in case the TPM dropped leading zero bytes.
	clear(out[:32-len(z.X.Buffer)])
	copy(out[32-len(z.X.Buffer):], z.X.Buffer)
	*zero = secret.IsZero(out[:])
	return nil
}

// withKey loads the key, authorizes it with the session in *sp (started on
// first use; sp nil: a session for this call only) and runs f, under the
// device lock. The key is flushed after.
func (id *Identity) withKey(sp **session, encryptOut bool, f func(tpm2.AuthHandle) error) error {
	// The auth callback may prompt a person: ask it outside the device lock.
	var need bool
	id.d.do(func() error {
		need = !id.closed && id.hasAuth && id.auth == nil && id.authFn != nil
		return nil
	})
	var fresh *lockedAuth
	if need {
		a, err := newLockedAuth(id.authFn, id.name)
		if err != nil {
			return err
		}
		if a != nil && id.failed.seen(id.name, a.Bytes()) {
			a.Destroy()
			return &AuthError{Name: id.name, NotResent: true}
		}
		fresh = a
	}
	return id.d.do(func() error {
		if id.closed {
			fresh.Destroy()
			return keystore.ErrClosed
		}
		if id.gen != id.d.gen {
			// The device reconnected: our session and saved context died
			// with the old connection (or were flushed as leftovers).
			id.dhS, id.ctx, id.gen = nil, nil, id.d.gen
		}
		if id.auth == nil {
			id.auth = fresh
			fresh = nil
		} else {
			fresh.Destroy()
		}
		if id.hasAuth && id.auth == nil {
			return fmt.Errorf("no auth value for %s: %w", id.name, keystore.ErrWrongPIN)
		}
		if sp == nil {
			var oneShot *session
			defer func() {
				if oneShot != nil {
					oneShot.close()
				}
			}()
			sp = &oneShot
		}
		if *sp == nil {
			s, err := id.startSession(encryptOut)
			if err != nil {
				return err
			}
			*sp = s
		}
		h, err := id.load()
		if err != nil {
			return err
		}
		defer id.d.flush(h.Handle)
		err = f(tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: (*sp).s})
		if err != nil {
			// The TPM may have dropped or desynchronized the session; a
			// fresh one costs little next to an error path.
			id.closeSessions()
			if errors.Is(err, tpm2.TPMRCLockout) {
				return id.d.lockout()
			}
			if isAuthFail(err) {
				// Never offer this value again: remember it, drop it, tell
				// the caller (which may hold a copy) to drop it too.
				id.failed.add(id.name, id.auth.Bytes())
				id.auth.Destroy()
				id.auth = nil
				if id.authFailed != nil {
					id.authFailed(id.name)
				}
				return id.d.authFailed(id.name, err)
			}
		}
		return err
	})
}

// checkSRK refuses a storage key other than the one recorded when the
// identity was created; d.mu is held and the SRK made.
func (id *Identity) checkSRK() error {
	if len(id.d.srkName.Buffer) == 0 {
		if err := id.d.withSRK(func(tpm2.NamedHandle) error { return nil }); err != nil {
			return err
		}
	}
	if !bytes.Equal(id.srk, id.d.srkName.Buffer) {
		return fmt.Errorf("tpm: %s: %w (recorded %x, the TPM presents %x): if the TPM was cleared the key is lost; otherwise check what sits between this host and the TPM",
			id.name, ErrSRKMismatch, id.srk, id.d.srkName.Buffer)
	}
	return nil
}

// verifyAuth checks the auth value with one authorized command: a signature
// over a random digest, verified here (which also proves the key file's
// public key belongs to the key the TPM loaded). It does not count in
// PrivateKeyOps.
func (id *Identity) verifyAuth() error {
	var d [32]byte
	rand.Read(d[:])
	sig, err := id.sign(d[:], "opening "+id.name+": checking its auth value")
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(id.ecPub, d[:], sig) {
		return fmt.Errorf("tpm: %s: key file's public key does not match the key: %w", id.name, ErrBadBlob)
	}
	return nil
}

// startSession starts an HMAC session salted to the SRK, so the auth value
// cannot be guessed offline from the HMACs on the bus.
func (id *Identity) startSession(encryptOut bool) (*session, error) {
	var s *session
	var err error
	// The salt and the session key derived from it are secrets.
	protect(func() {
		err = id.d.withSRK(func(srk tpm2.NamedHandle) error {
			if err := id.checkSRK(); err != nil {
				return err
			}
			opts := []tpm2.AuthOption{tpm2.Auth(id.auth.Bytes()), tpm2.Salted(srk.Handle, id.d.srkPub)}
			if encryptOut {
				opts = append(opts, tpm2.AESEncryption(128, tpm2.EncryptOut))
			}
			sess, closer, err := tpm2.HMACSession(id.d.t, tpm2.TPMAlgSHA256, 16, opts...)
			if err != nil {
				return classify("starting a salted session", err)
			}
			s = &session{sess, closer}
			return nil
		})
	})
	return s, err
}

// load makes the key resident: from its saved context when possible (one
// command, no SRK), else from the blob under the SRK, saving the context.
func (id *Identity) load() (tpm2.NamedHandle, error) {
	name, err := id.keyName()
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	if id.ctx != nil {
		rsp, err := tpm2.ContextLoad{Context: *id.ctx}.Execute(id.d.t)
		if err == nil {
			return tpm2.NamedHandle{Handle: rsp.LoadedHandle, Name: name}, nil
		}
		id.ctx = nil // stale after a TPM reset: load the blob again
	}
	var h tpm2.NamedHandle
	err = id.d.withSRK(func(srk tpm2.NamedHandle) error {
		if err := id.checkSRK(); err != nil {
			return err
		}
		rsp, err := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    id.priv,
			InPublic:     id.pub,
		}.Execute(id.d.t)
		if err != nil {
			return classify("loading "+id.name, err)
		}
		h = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
		return nil
	})
	if err != nil {
		return h, err
	}
	if sv, err := (tpm2.ContextSave{SaveHandle: h.Handle}).Execute(id.d.t); err == nil {
		id.ctx = &sv.Context
	}
	return h, nil
}

func (id *Identity) keyName() (tpm2.TPM2BName, error) {
	p, err := id.pub.Contents()
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	n, err := tpm2.ObjectName(p)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	return *n, nil
}

// closeSessions flushes the sessions. They reference the auth value's
// locked memory, so this runs before the auth value is destroyed.
func (id *Identity) closeSessions() {
	for _, sp := range []**session{&id.dhS} {
		if *sp != nil {
			(*sp).close()
			*sp = nil
		}
	}
}

// Close flushes the identity's sessions, wipes its auth value and releases
// the TPM. Further use gives keystore.ErrClosed.
func (id *Identity) Close() error {
	if id == nil {
		return nil
	}
	first := false
	err := id.d.do(func() error {
		if id.closed {
			return nil
		}
		id.closed, first = true, true
		id.closeSessions()
		id.auth.Destroy()
		id.auth = nil
		id.ctx = nil
		return nil
	})
	if err != nil || !first {
		return err
	}
	id.failed.release()
	err = id.d.release()
	collect()
	return err
}

// collect runs a garbage collection, so that runtime/secret erases now the
// heap temporaries go-tpm made inside protect (the session HMAC keys built
// from the auth value, the decrypted ZGen responses) instead of whenever a
// collection comes, which on an idle device may be never. A custody test
// found the auth value and the DH outputs in the process after Close
// without it. It costs one collection per Close (about 0.3 ms on a small
// heap).
func collect() { runtime.GC() }

func ecdsaPublic(pt *tpm2.TPMSECCPoint) (*ecdsa.PublicKey, error) {
	if len(pt.X.Buffer) > 32 || len(pt.Y.Buffer) > 32 {
		return nil, errors.New("oversized P-256 coordinate")
	}
	u := make([]byte, 65)
	u[0] = 4
	copy(u[33-len(pt.X.Buffer):33], pt.X.Buffer)
	copy(u[65-len(pt.Y.Buffer):], pt.Y.Buffer)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), u)
}

func dhPublic(pk *ecdsa.PublicKey) (keystore.PublicKey, error) {
	e, err := pk.ECDH()
	if err != nil {
		return keystore.PublicKey{}, err
	}
	return keystore.FromECDH(e)
}
