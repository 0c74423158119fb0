package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/loramesh/loramesh-core/keystore"
)

// device is one open TPM shared by a Keystore and the identities it opened.
// A transport is not safe for concurrent use and a command sequence (load,
// use, flush) must not interleave with another, so every use holds mu.
// The transport closes when the last user releases it.
type device struct {
	mu   sync.Mutex
	tpm  transport.TPMCloser
	t    retrying
	refs int

	// dial opens the transport again after a failure (nil: a transport
	// handed to OpenTransport, which cannot be reopened); where names it.
	dial   func() (transport.TPMCloser, error)
	where  string
	gen    uint64 // counts reconnections: identities drop sessions and contexts of older ones
	broken bool   // the last reconnection failed: try again on the next call

	srkPub  tpm2.TPMTPublic
	srkName tpm2.TPM2BName
	srkCtx  *tpm2.TPMSContext // saved SRK context: holds no slot between uses
}

// srkTemplate is the TCG "H-2" ECC P-256 storage key (empty unique) that
// tpm2-tools and the OpenSSL provider recreate as the parent of a TSS2 key
// file; go-tpm's ECCSRKTemplate has a zero-filled unique and is another key.
var srkTemplate = keyfile.ECCSRK_H2_Template

func newDevice(t transport.TPMCloser, dial func() (transport.TPMCloser, error), where string) (*device, error) {
	d := &device{tpm: t, t: retrying{t}, refs: 1, dial: dial, where: where}
	if err := d.init(); err != nil {
		t.Close()
		return nil, err
	}
	return d, nil
}

func (d *device) init() error {
	if err := d.flushLeftovers(); err != nil {
		return err
	}
	if err := d.checkP256(); err != nil {
		return err
	}
	return d.withSRK(func(tpm2.NamedHandle) error { return nil })
}

// flushLeftovers frees transient objects and loaded sessions a crashed client
// left behind: swtpm has no resource manager and only 3 object slots. Behind
// /dev/tpmrm0 the list is empty.
func (d *device) flushLeftovers() error {
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      uint32(ht) << 24,
			PropertyCount: 64,
		}.Execute(d.t)
		if err != nil {
			return classify("listing leftover handles", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return classify("listing leftover handles", err)
		}
		for _, h := range hs.Handle {
			if uint32(h)>>24 != uint32(ht) {
				continue
			}
			// A handle may vanish meanwhile (saved sessions): ignore errors.
			tpm2.FlushContext{FlushHandle: h}.Execute(d.t)
		}
	}
	return nil
}

func (d *device) checkP256() error {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapECCCurves,
		PropertyCount: 64,
	}.Execute(d.t)
	if err != nil {
		return classify("listing ECC curves", err)
	}
	cs, err := rsp.CapabilityData.Data.ECCCurves()
	if err != nil {
		return classify("listing ECC curves", err)
	}
	for _, c := range cs.ECCCurves {
		if c == tpm2.TPMECCNistP256 {
			return nil
		}
	}
	return ErrNoP256
}

// withSRK loads the SRK from its saved context (creating it the first time or
// after a TPM reset invalidated the context), runs f and flushes it.
func (d *device) withSRK(f func(tpm2.NamedHandle) error) error {
	var srk tpm2.NamedHandle
	if d.srkCtx != nil {
		rsp, err := tpm2.ContextLoad{Context: *d.srkCtx}.Execute(d.t)
		if err == nil {
			srk = tpm2.NamedHandle{Handle: rsp.LoadedHandle, Name: d.srkName}
		}
	}
	if srk.Handle == 0 {
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.TPMRHOwner,
			InPublic:      tpm2.New2B(srkTemplate),
		}.Execute(d.t)
		if err != nil {
			return classify("creating the storage key", err)
		}
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			d.flush(rsp.ObjectHandle)
			return classify("reading the storage key", err)
		}
		// The name pinned in key files is computed here from the public
		// area the salt will be encrypted to, not taken from the response.
		name, err := tpm2.ObjectName(pub)
		if err != nil || !bytes.Equal(name.Buffer, rsp.Name.Buffer) {
			d.flush(rsp.ObjectHandle)
			return fmt.Errorf("tpm: storage key: name does not match its public area: %w", ErrSRKMismatch)
		}
		d.srkPub, d.srkName = *pub, *name
		srk = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
		if sv, err := (tpm2.ContextSave{SaveHandle: rsp.ObjectHandle}).Execute(d.t); err == nil {
			d.srkCtx = &sv.Context
		}
	}
	defer d.flush(srk.Handle)
	return f(srk)
}

func (d *device) flush(h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(d.t)
}

// do runs f with exclusive use of the TPM. When f fails because the link
// broke (a TPM or swtpm that restarted, a dropped socket) or because the TPM
// forgot the handles we hold (a TPM restart behind a transport that dials
// per command), the device reconnects, flushes leftovers, re-creates the
// storage key and runs f once more; identities notice the new generation
// and start new sessions and load their keys again. Auth failures and bad
// input are never retried.
func (d *device) do(f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refs == 0 {
		return keystore.ErrClosed
	}
	if d.broken {
		if err := d.reconnect(); err != nil {
			return err
		}
	}
	err := f()
	if err == nil || !recoverable(err) {
		return err
	}
	if d.dial == nil {
		if isLink(err) {
			return err
		}
		d.srkCtx = nil
		return f()
	}
	if rerr := d.reconnect(); rerr != nil {
		return rerr
	}
	return f()
}

// reconnect reopens the transport and sets the device up as at open; mu is
// held.
func (d *device) reconnect() error {
	d.gen++
	d.srkCtx = nil
	d.tpm.Close()
	t, err := d.dial()
	if err != nil {
		d.broken = true
		d.tpm, d.t = closedTPM{}, retrying{closedTPM{}}
		return fmt.Errorf("%w: reconnecting to %s: %v (the next call tries again)", ErrNoDevice, d.where, err)
	}
	d.tpm, d.t = t, retrying{t}
	if err := d.init(); err != nil {
		d.broken = isLink(err)
		return fmt.Errorf("tpm: reconnected to %s: %w", d.where, err)
	}
	d.broken = false
	return nil
}

// closedTPM stands in for a transport that could not be reopened.
type closedTPM struct{}

func (closedTPM) Send([]byte) ([]byte, error) { return nil, &linkError{errors.New("not connected")} }
func (closedTPM) Close() error                { return nil }

// linkError is a transport failure: the command may not have reached the
// TPM, and no answer came back.
type linkError struct{ err error }

func (e *linkError) Error() string { return "TPM link: " + e.err.Error() }
func (e *linkError) Unwrap() error { return e.err }

func isLink(err error) bool {
	var le *linkError
	return errors.As(err, &le)
}

// recoverable: the link broke, or the TPM no longer knows a handle or
// session we hold (it restarted).
func recoverable(err error) bool {
	if isLink(err) {
		return true
	}
	if isAuthFail(err) || errors.Is(err, tpm2.TPMRCLockout) {
		return false
	}
	for _, rc := range []tpm2.TPMRC{tpm2.TPMRCInitialize, tpm2.TPMRCHandle, tpm2.TPMRCValue,
		tpm2.TPMRCReferenceH0, tpm2.TPMRCReferenceS0, tpm2.TPMRCObjectMemory, tpm2.TPMRCSessionMemory} {
		if errors.Is(err, rc) {
			return true
		}
	}
	return false
}

func (d *device) acquire() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refs == 0 {
		return keystore.ErrClosed
	}
	d.refs++
	return nil
}

// release drops one reference; the last one closes the transport.
func (d *device) release() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refs == 0 {
		return nil
	}
	d.refs--
	if d.refs > 0 {
		return nil
	}
	d.srkCtx = nil
	if err := d.tpm.Close(); err != nil {
		return fmt.Errorf("tpm: closing transport: %w", err)
	}
	return nil
}

// daState reads the dictionary-attack counter, its maximum and the lockout
// interval (TPM_PT_LOCKOUT_COUNTER, _MAX_AUTH_FAIL, _LOCKOUT_INTERVAL).
func (d *device) daState() (counter, max uint32, interval time.Duration, ok bool) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutCounter),
		PropertyCount: 3,
	}.Execute(d.t)
	if err != nil {
		return 0, 0, 0, false
	}
	ps, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, 0, 0, false
	}
	seen := 0
	for _, p := range ps.TPMProperty {
		switch p.Property {
		case tpm2.TPMPTLockoutCounter:
			counter, seen = p.Value, seen+1
		case tpm2.TPMPTMaxAuthFail:
			max, seen = p.Value, seen+1
		case tpm2.TPMPTLockoutInterval:
			interval = time.Duration(p.Value) * time.Second
		}
	}
	return counter, max, interval, seen == 2
}

// lockout builds the error for TPM_RC_LOCKOUT with the TPM's lockout interval.
func (d *device) lockout() error {
	le := &LockoutError{}
	if _, _, wait, ok := d.daState(); ok {
		le.Wait = wait
	}
	return le
}

// authFailed builds the error for a rejected auth value of identity name,
// with the tries left before lockout.
func (d *device) authFailed(name string, err error) error {
	ae := &AuthError{Name: name, err: err}
	if c, m, _, ok := d.daState(); ok && m > 0 {
		ae.Max, ae.Known = m, true
		if c < m {
			ae.Left = m - c
		}
	}
	return ae
}

// retrying resends commands the TPM answered with a warning meaning "not
// executed, try again". The resent bytes are identical, which is valid: the
// TPM did not consume the session nonces.
type retrying struct{ tpm transport.TPM }

const (
	maxRetries = 10
	retryDelay = 5 * time.Millisecond
)

func (r retrying) Send(cmd []byte) ([]byte, error) {
	for i := 0; ; i++ {
		rsp, err := r.tpm.Send(cmd)
		if err != nil {
			return nil, &linkError{err}
		}
		if len(rsp) < 10 || i == maxRetries {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(retryDelay * time.Duration(i+1))
		default:
			return rsp, nil
		}
	}
}
