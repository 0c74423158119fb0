package tpm

import (
	"encoding/binary"
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

	srkPub  tpm2.TPMTPublic
	srkName tpm2.TPM2BName
	srkCtx  *tpm2.TPMSContext // saved SRK context: holds no slot between uses
}

// srkTemplate is the TCG "H-2" ECC P-256 storage key (empty unique) that
// tpm2-tools and the OpenSSL provider recreate as the parent of a TSS2 key
// file; go-tpm's ECCSRKTemplate has a zero-filled unique and is another key.
var srkTemplate = keyfile.ECCSRK_H2_Template

func newDevice(t transport.TPMCloser) (*device, error) {
	d := &device{tpm: t, t: retrying{t}, refs: 1}
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
		d.srkPub, d.srkName = *pub, rsp.Name
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

// do runs f with exclusive use of the TPM.
func (d *device) do(f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refs == 0 {
		return keystore.ErrClosed
	}
	return f()
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

// lockout builds the error for TPM_RC_LOCKOUT with the TPM's lockout interval.
func (d *device) lockout() error {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutInterval),
		PropertyCount: 1,
	}.Execute(d.t)
	le := &LockoutError{}
	if err == nil {
		if ps, err := rsp.CapabilityData.Data.TPMProperties(); err == nil {
			for _, p := range ps.TPMProperty {
				if p.Property == tpm2.TPMPTLockoutInterval {
					le.Wait = time.Duration(p.Value) * time.Second
				}
			}
		}
	}
	return le
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
		if err != nil || len(rsp) < 10 || i == maxRetries {
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
