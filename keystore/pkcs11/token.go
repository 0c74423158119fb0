package pkcs11

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

// token is one logged-in token, shared by every Keystore and Identity of the
// process that names it. PKCS#11 sessions are not thread safe, so each
// operation borrows a session from a bounded pool through do; the login
// belongs to the application and lasts while loginSession is open.
type token struct {
	mod    *module
	slot   uint
	label  string
	serial string
	broken atomic.Bool   // the token stopped answering: restart the module on the next call
	gen    atomic.Uint64 // counts restarts: identities find their handles again
	refs   int           // Keystores and Identities holding it; under registry's lock

	loginSession p11.SessionHandle
	loggedIn     bool           // we logged in (and log out at the end)
	pin          *secret.Buffer // the PIN in locked memory, to check later opens and log in again; nil if we did not log in

	suites map[keystore.Suite]suiteMech // probed once
	probe  map[keystore.Suite]error     // why a suite is missing

	genMu  sync.Mutex   // serialises Generate
	mu     sync.RWMutex // held for reading by operations, for writing by close
	closed bool
	sem    chan struct{}
	poolMu sync.Mutex
	idle   []p11.SessionHandle
}

// acquire finds (or loads, logs into and probes) the token cfg names. The
// PIN is pin if non-nil, else cfg's pin-value or pin-source. pinLow reports
// CKF_USER_PIN_COUNT_LOW as seen before our login.
func acquire(cfg Config, pin []byte) (t *token, pinLow bool, err error) {
	registry.Lock()
	defer registry.Unlock()

	m, err := loadModule(cfg.ModulePath)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil && len(m.tokens) == 0 {
			m.unload()
		}
	}()
	slot, info, err := m.findSlot(cfg)
	if err != nil {
		return nil, false, err
	}
	pinLow = info.Flags&p11.CKF_USER_PIN_COUNT_LOW != 0
	if t = m.tokens[slot]; t != nil {
		if err := t.checkPIN(cfg, pin); err != nil {
			return nil, pinLow, err
		}
		t.refs++
		return t, pinLow, nil
	}
	t = &token{mod: m, slot: slot, label: info.Label, serial: info.SerialNumber, refs: 1}
	// The login session is read-only (a user may log in from one), so every
	// read-write session the token allows goes to the pool: a token with a
	// single RW session still works.
	n := maxSessions
	if l := info.MaxRwSessionCount; l != p11.CK_EFFECTIVELY_INFINITE && l != p11.CK_UNAVAILABLE_INFORMATION && int(l) < n {
		n = max(int(l), 1)
	}
	t.sem = make(chan struct{}, n)
	if t.loginSession, err = m.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION); err != nil {
		return nil, pinLow, wrap("opening session", err)
	}
	if info.Flags&p11.CKF_LOGIN_REQUIRED != 0 {
		if err := t.login(cfg, pin, info.Flags); err != nil {
			m.ctx.CloseSession(t.loginSession)
			return nil, pinLow, err
		}
	}
	if err := t.probeSuites(); err != nil {
		t.shutdown()
		return nil, pinLow, err
	}
	m.tokens[slot] = t
	return t, pinLow, nil
}

// pinBuffer copies the PIN into locked memory. The caller's pin stays the
// caller's to wipe; a pin-source file's bytes are wiped here.
func pinBuffer(cfg Config, pin []byte) (*secret.Buffer, error) {
	if pin == nil {
		pin = cfg.PINValue
	}
	if pin == nil && cfg.PINSource != "" {
		b, err := os.ReadFile(strings.TrimPrefix(cfg.PINSource, "file:"))
		if err != nil {
			return nil, fmt.Errorf("pkcs11: reading pin-source: %w", keystore.ErrWrongPIN)
		}
		defer secret.Wipe(b)
		pin = b
		for len(pin) > 0 && (pin[len(pin)-1] == '\n' || pin[len(pin)-1] == '\r') {
			pin = pin[:len(pin)-1]
		}
	}
	if len(pin) == 0 {
		return nil, fmt.Errorf("pkcs11: no PIN given: %w", keystore.ErrWrongPIN)
	}
	buf, err := secret.NewBuffer(pin)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: PIN: %w", err)
	}
	return buf, nil
}

func (t *token) login(cfg Config, pin []byte, flags uint) error {
	buf, err := pinBuffer(cfg, pin)
	if err != nil {
		return err
	}
	// The module reads the PIN in place, from locked memory (secretcalls.go).
	err = t.mod.login(t.loginSession, buf.Bytes())
	switch {
	case err == nil:
		t.loggedIn = true
	case errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)):
		// Logged in by other code in this process: we cannot check the PIN.
		buf.Free()
		return nil
	default:
		buf.Free() // a PIN that failed is dropped at once
		err = wrap("login", err)
		if flags&p11.CKF_USER_PIN_FINAL_TRY != 0 {
			err = fmt.Errorf("%w (the next wrong PIN locks the token)", err)
		} else if flags&p11.CKF_USER_PIN_COUNT_LOW != 0 {
			err = fmt.Errorf("%w (wrong PINs were entered before: PIN count low)", err)
		}
		return err
	}
	t.pin = buf
	return nil
}

// checkPIN verifies a later open against the PIN we logged in with: C_Login
// would answer CKR_USER_ALREADY_LOGGED_IN to any PIN.
func (t *token) checkPIN(cfg Config, pin []byte) error {
	if t.pin == nil {
		return nil
	}
	buf, err := pinBuffer(cfg, pin)
	if err != nil {
		return err
	}
	defer buf.Free()
	if subtle.ConstantTimeCompare(t.pin.Bytes(), buf.Bytes()) != 1 {
		return fmt.Errorf("pkcs11: login: %w", keystore.ErrWrongPIN)
	}
	return nil
}

// retain adds a reference for a new Identity, unless the last holder
// released the token meanwhile. closed is written under registry's lock too.
func (t *token) retain() error {
	registry.Lock()
	defer registry.Unlock()
	if t.closed {
		return keystore.ErrClosed
	}
	t.refs++
	return nil
}

// release drops one reference; the last closes the sessions and, with the
// module's last token, finalizes and unloads the module.
func (t *token) release() {
	registry.Lock()
	defer registry.Unlock()
	if t.refs--; t.refs > 0 {
		return
	}
	t.shutdown()
	delete(t.mod.tokens, t.slot)
	if len(t.mod.tokens) == 0 {
		t.mod.unload()
	}
}

// shutdown waits for running operations and closes every session.
func (t *token) shutdown() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, sh := range t.idle {
		t.mod.ctx.CloseSession(sh)
	}
	t.idle = nil
	if t.loggedIn {
		t.mod.ctx.Logout(t.loginSession)
	}
	t.mod.ctx.CloseSession(t.loginSession)
	t.pin.Free()
	t.pin = nil
}

// PKCS#11 3.0 constants miekg/pkcs11 v1.1.2 lacks.
const (
	ckmECEdwardsKeyPairGen    = 0x1055
	ckmECMontgomeryKeyPairGen = 0x1056
	ckkECEdwards              = 0x40
	ckkECMontgomery           = 0x41
)

// suiteMech is how a token makes a suite's key pair.
type suiteMech struct {
	gen, keyType uint
	params       []byte
}

var mechNames = map[uint]string{
	p11.CKM_EC_KEY_PAIR_GEN:   "CKM_EC_KEY_PAIR_GEN",
	p11.CKM_ECDSA:             "CKM_ECDSA",
	p11.CKM_ECDH1_DERIVE:      "CKM_ECDH1_DERIVE",
	ckmECEdwardsKeyPairGen:    "CKM_EC_EDWARDS_KEY_PAIR_GEN",
	ckmECMontgomeryKeyPairGen: "CKM_EC_MONTGOMERY_KEY_PAIR_GEN",
}

// probeSuites reads the mechanism list once per token. P-256 needs its
// three mechanisms; X25519 is offered only if a session key pair made the
// standard way (CKM_EC_MONTGOMERY_KEY_PAIR_GEN) or SoftHSM's way
// (CKM_EC_EDWARDS_KEY_PAIR_GEN with curve25519 parameters) derives the same
// secret as crypto/ecdh with a software peer.
func (t *token) probeSuites() error {
	t.suites = map[keystore.Suite]suiteMech{}
	t.probe = map[keystore.Suite]error{}
	list, err := t.mod.ctx.GetMechanismList(t.slot)
	if err != nil {
		return wrap("listing mechanisms", err)
	}
	has := map[uint]bool{}
	for _, m := range list {
		has[m.Mechanism] = true
	}
	missing := func(ms ...uint) error {
		for _, m := range ms {
			if !has[m] {
				return fmt.Errorf("pkcs11: token lacks %s: %w", mechNames[m], keystore.ErrUnsupportedSuite)
			}
		}
		return nil
	}
	if err := missing(p11.CKM_EC_KEY_PAIR_GEN, p11.CKM_ECDSA, p11.CKM_ECDH1_DERIVE); err != nil {
		t.probe[keystore.P256] = err
	} else {
		t.suites[keystore.P256] = suiteMech{p11.CKM_EC_KEY_PAIR_GEN, p11.CKK_EC, oidP256}
	}
	t.probe[keystore.X25519] = missing(ckmECMontgomeryKeyPairGen, p11.CKM_ECDH1_DERIVE)
	for _, m := range []suiteMech{
		{ckmECMontgomeryKeyPairGen, ckkECMontgomery, oidX25519},
		{ckmECEdwardsKeyPairGen, ckkECEdwards, oidX25519},
	} {
		if has[m.gen] && has[p11.CKM_ECDH1_DERIVE] && t.probeX25519(m) == nil {
			t.suites[keystore.X25519] = m
			delete(t.probe, keystore.X25519)
			break
		}
	}
	return nil
}

func (t *token) probeX25519(m suiteMech) error {
	return t.do(func(sh p11.SessionHandle) error {
		ctx := t.mod.ctx
		pub, priv, err := generate(ctx, sh, m, "loramesh-probe", []byte("probe"), false)
		if err != nil {
			return err
		}
		defer ctx.DestroyObject(sh, pub)
		defer ctx.DestroyObject(sh, priv)
		pt, err := pointOf(ctx, sh, pub)
		if err != nil {
			return err
		}
		tokenPub, err := ecdh.X25519().NewPublicKey(pt)
		if err != nil {
			return err
		}
		peer, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		var got [32]byte
		if err := derive(t.mod, sh, priv, peer.PublicKey().Bytes(), &got); err != nil {
			return err
		}
		want, err := peer.ECDH(tokenPub)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return errors.New("pkcs11: X25519 probe: token secret differs from crypto/ecdh")
		}
		return nil
	})
}
