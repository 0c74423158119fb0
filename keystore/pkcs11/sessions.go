package pkcs11

import (
	"errors"

	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

// maxSessions bounds each token's session pool (lowered to the token's own
// limit when it reports one).
const maxSessions = 8

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
