package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"github.com/awnumar/memguard"
	p11 "github.com/miekg/pkcs11"

	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
)

// Package errors. Each wraps a keystore sentinel, so errors.Is works with
// either.
var (
	ErrModuleNotFound  = fmt.Errorf("pkcs11: module not found: %w", keystore.ErrKeystore)
	ErrModuleLoad      = fmt.Errorf("pkcs11: module not loadable: %w", keystore.ErrKeystore)
	ErrTokenNotFound   = fmt.Errorf("pkcs11: no such token: %w", keystore.ErrNotFound)
	ErrTokenNotPresent = fmt.Errorf("pkcs11: token not present: %w", keystore.ErrNotFound)
	ErrUnsupportedHash = fmt.Errorf("pkcs11: only SHA-256 digests are signed: %w", keystore.ErrUnsupportedSuite)
)

// maxSessions bounds each token's session pool (lowered to the token's own
// limit when it reports one).
const maxSessions = 8

// registry holds every module this package has loaded, by resolved path, so
// a module is initialised once per process however many keystores use it.
var registry = struct {
	sync.Mutex
	modules map[string]*module
}{modules: map[string]*module{}}

type module struct {
	path   string
	ctx    *p11.Ctx
	owner  bool // our C_Initialize succeeded, so C_Finalize is ours too
	tokens map[uint]*token
}

// token is one logged-in token, shared by every Keystore and Identity of the
// process that names it. PKCS#11 sessions are not thread safe, so each
// operation borrows a session from a bounded pool through do; the login
// belongs to the application and lasts while loginSession is open.
type token struct {
	mod  *module
	slot uint
	refs int // Keystores and Identities holding it; under registry's lock

	loginSession p11.SessionHandle
	loggedIn     bool              // we logged in (and log out at the end)
	pin          *memguard.Enclave // sealed PIN, to check later opens; nil if we did not log in

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
	t = &token{mod: m, slot: slot, refs: 1}
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

func loadModule(path string) (*module, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no module-path given", ErrModuleNotFound)
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrModuleNotFound, path)
	}
	if m := registry.modules[abs]; m != nil {
		return m, nil
	}
	ctx := p11.New(abs) // nil when dlopen or C_GetFunctionList fails
	if ctx == nil {
		return nil, fmt.Errorf("%w: %s", ErrModuleLoad, abs)
	}
	m := &module{path: abs, ctx: ctx, owner: true, tokens: map[uint]*token{}}
	if err := ctx.Initialize(); err != nil {
		// Someone else in this process (not through us) initialised it: use
		// it, but never finalize it under them.
		if !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			ctx.Destroy()
			return nil, fmt.Errorf("%w: C_Initialize %s: %w", ErrModuleLoad, abs, err)
		}
		m.owner = false
	}
	registry.modules[abs] = m
	return m, nil
}

// unload finalizes the module (if we initialised it) and unloads it.
func (m *module) unload() {
	if m.owner {
		m.ctx.Finalize()
	}
	m.ctx.Destroy()
	if registry.modules[m.path] == m {
		delete(registry.modules, m.path)
	}
}

func (m *module) findSlot(cfg Config) (uint, p11.TokenInfo, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, p11.TokenInfo{}, wrap("listing slots", err)
	}
	var found []uint
	var info p11.TokenInfo
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			continue // removed meanwhile
		}
		if (cfg.Token == "" || ti.Label == cfg.Token) && (cfg.Serial == "" || ti.SerialNumber == cfg.Serial) {
			found, info = append(found, s), ti
		}
	}
	switch {
	case len(found) == 0 && cfg.Token == "" && cfg.Serial == "":
		return 0, info, fmt.Errorf("%w: no token in %s", ErrTokenNotPresent, m.path)
	case len(found) == 0:
		return 0, info, fmt.Errorf("%w: token %q", ErrTokenNotFound, cfg.Token)
	case len(found) > 1:
		return 0, info, fmt.Errorf("pkcs11: %d tokens match %q, name one by label and serial: %w", len(found), cfg.Token, keystore.ErrKeystore)
	}
	return found[0], info, nil
}

// pinBuffer copies the PIN into locked memory. The caller's pin stays the
// caller's to wipe; a pin-source file's bytes are wiped here.
func pinBuffer(cfg Config, pin []byte) (*memguard.LockedBuffer, error) {
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
	// memguard panics, purging every buffer in the process, when mlock
	// fails: core.WithLockedHeadroom checks the pages first (the buffer,
	// memguard's three key buffers on first use, one to spare).
	var buf *memguard.LockedBuffer
	err := secret.WithHeadroom(5, func() error {
		buf = memguard.NewBuffer(len(pin))
		buf.Copy(pin)
		return nil
	})
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
	// The string aliases locked memory; miekg copies it into C memory for the
	// call (and frees that unwiped: a limit of the binding).
	b := buf.Bytes()
	err = t.mod.ctx.Login(t.loginSession, p11.CKU_USER, unsafe.String(&b[0], len(b)))
	switch {
	case err == nil:
		t.loggedIn = true
	case errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)):
		// Logged in by other code in this process: we cannot check the PIN.
		buf.Destroy()
		return nil
	default:
		buf.Destroy() // a PIN that failed is dropped at once
		err = wrap("login", err)
		if flags&p11.CKF_USER_PIN_FINAL_TRY != 0 {
			err = fmt.Errorf("%w (the next wrong PIN locks the token)", err)
		} else if flags&p11.CKF_USER_PIN_COUNT_LOW != 0 {
			err = fmt.Errorf("%w (wrong PINs were entered before: PIN count low)", err)
		}
		return err
	}
	t.pin = buf.Seal() // Seal destroys buf
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
	defer buf.Destroy()
	var want *memguard.LockedBuffer
	if herr := secret.WithHeadroom(5, func() error { want, err = t.pin.Open(); return nil }); herr != nil {
		return fmt.Errorf("pkcs11: PIN: %w", herr)
	}
	if err != nil {
		return fmt.Errorf("pkcs11: opening PIN enclave: %w", keystore.ErrKeystore)
	}
	defer want.Destroy()
	if !want.EqualTo(buf.Bytes()) {
		return fmt.Errorf("pkcs11: login: %w", keystore.ErrWrongPIN)
	}
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
	t.pin = nil
}

// errDropSession, wrapped in f's error, makes do close the session instead
// of pooling it: closing a session destroys its session objects.
var errDropSession = errors.New("session closed")

// do runs f with a session of its own. At most cap(sem) sessions exist; a
// session whose handle the module no longer knows is dropped, not reused.
func (t *token) do(f func(p11.SessionHandle) error) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return keystore.ErrClosed
	}
	t.sem <- struct{}{}
	defer func() { <-t.sem }()

	t.poolMu.Lock()
	var sh p11.SessionHandle
	n := len(t.idle)
	if n > 0 {
		sh, t.idle = t.idle[n-1], t.idle[:n-1]
	}
	t.poolMu.Unlock()
	if n == 0 {
		var err error
		if sh, err = t.mod.ctx.OpenSession(t.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION); err != nil {
			return wrap("opening session", err)
		}
	}
	err := f(sh)
	if errors.Is(err, errDropSession) || errors.Is(err, p11.Error(p11.CKR_SESSION_HANDLE_INVALID)) || errors.Is(err, p11.Error(p11.CKR_SESSION_CLOSED)) {
		t.mod.ctx.CloseSession(sh)
		return err
	}
	t.poolMu.Lock()
	t.idle = append(t.idle, sh)
	t.poolMu.Unlock()
	return err
}

// wrap labels a module error with its step and the matching sentinel.
func wrap(step string, err error) error {
	var rv p11.Error
	if !errors.As(err, &rv) {
		return fmt.Errorf("pkcs11: %s: %w", step, err)
	}
	var s error
	switch rv {
	case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE:
		s = keystore.ErrWrongPIN
	case p11.CKR_PIN_LOCKED, p11.CKR_PIN_EXPIRED:
		s = keystore.ErrLockedOut
	case p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_RECOGNIZED:
		s = ErrTokenNotPresent
	case p11.CKR_MECHANISM_INVALID, p11.CKR_CURVE_NOT_SUPPORTED:
		s = keystore.ErrUnsupportedSuite
	case p11.CKR_SESSION_CLOSED, p11.CKR_CRYPTOKI_NOT_INITIALIZED:
		s = keystore.ErrClosed
	case p11.CKR_OBJECT_HANDLE_INVALID, p11.CKR_KEY_HANDLE_INVALID:
		s = keystore.ErrNotFound // deleted under an open Identity
	default:
		s = keystore.ErrKeystore
	}
	return fmt.Errorf("pkcs11: %s: %w (%w)", step, s, rv)
}
