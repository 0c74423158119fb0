package pkcs11

import (
	"errors"
	"fmt"

	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

// maxSessions bounds each token's session pool (lowered to the token's own
// limit when it reports one).
const maxSessions = 8

// errDropSession, wrapped in f's error, makes do close the session instead
// of pooling it: closing a session destroys its session objects.
var errDropSession = errors.New("session closed")

// do runs f with a session of its own. When f fails and the token no longer
// answers C_GetTokenInfo (its storage became unreadable or went away: SoftHSM
// then reports every object as missing), the failure is reported as
// ErrTokenUnavailable, never as a missing identity, and the token is marked
// broken; the next call re-initialises the module, reopens the sessions and
// logs in again with the PIN kept in locked memory (module.restart), and
// goes on if the token is back.
func (t *token) do(f func(p11.SessionHandle) error) error {
	if t.broken.Load() {
		if err := t.recover(); err != nil {
			return err
		}
	}
	err := t.run(f)
	if err == nil || errors.Is(err, keystore.ErrClosed) && !errors.Is(err, p11.Error(p11.CKR_SESSION_CLOSED)) {
		return err
	}
	return t.check(err)
}

// check returns err, or ErrTokenUnavailable (marking the token broken) when
// the token does not answer.
func (t *token) check(err error) error {
	t.mu.RLock()
	closed := t.closed
	var ierr error
	if !closed {
		_, ierr = t.mod.ctx.GetTokenInfo(t.slot)
	}
	t.mu.RUnlock()
	if closed || ierr == nil {
		return err
	}
	t.broken.Store(true)
	return fmt.Errorf("pkcs11: token %q is present but unreadable, or gone (%w; %w): restore access to its storage; the next call reconnects and logs in again",
		t.label, ErrTokenUnavailable, ierr)
}

// healthy is check for callers whose success is ambiguous (an empty List).
func (t *token) healthy() error { return t.check(nil) }

func (t *token) run(f func(p11.SessionHandle) error) error {
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

// recover restarts the module if the token is still marked broken.
func (t *token) recover() error {
	registry.Lock()
	defer registry.Unlock()
	if !t.broken.Load() {
		return nil
	}
	if err := t.mod.restart(); err != nil {
		return fmt.Errorf("pkcs11: token %q: %w (%w): restore access to its storage; the next call tries again", t.label, ErrTokenUnavailable, err)
	}
	if t.broken.Load() {
		return fmt.Errorf("pkcs11: token %q is still unreadable or gone: %w: restore access to its storage; the next call tries again", t.label, ErrTokenUnavailable)
	}
	return nil
}

// restart finalizes and re-initialises the module (SoftHSM only rescans its
// token directories at C_Initialize) and reattaches every token of it:
// fresh login session, login with the kept PIN, empty pool, new generation
// (identities find their key handles again). registry's lock is held.
func (m *module) restart() error {
	if !m.owner {
		return errors.New("the module was initialised by other code in this process, so it cannot be restarted: close every keystore and identity and open again")
	}
	var toks []*token
	for _, tk := range m.tokens {
		tk.mu.Lock()
		toks = append(toks, tk)
	}
	defer func() {
		for _, tk := range toks {
			tk.mu.Unlock()
		}
	}()
	m.ctx.Finalize() // closes every session and logs out
	if err := m.ctx.Initialize(); err != nil {
		for _, tk := range toks {
			tk.broken.Store(true)
		}
		return wrap("C_Initialize", err)
	}
	m.tokens = map[uint]*token{}
	for _, tk := range toks {
		tk.idle = nil
		if err := tk.reattach(); err != nil {
			tk.broken.Store(true)
		} else {
			tk.broken.Store(false)
		}
		m.tokens[tk.slot] = tk
	}
	return nil
}

// reattach finds the token again and logs in; mu is held for writing.
func (tk *token) reattach() error {
	slot, _, err := tk.mod.findSlot(Config{Token: tk.label, Serial: tk.serial})
	if err != nil {
		return err
	}
	sh, err := tk.mod.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		return wrap("opening session", err)
	}
	if tk.loggedIn {
		if err := tk.mod.login(sh, tk.pin.Bytes()); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
			tk.mod.ctx.CloseSession(sh)
			return wrap("login", err)
		}
	}
	tk.slot, tk.loginSession = slot, sh
	tk.gen.Add(1)
	return nil
}
