package main

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/tpm"
)

// tpmAuth hands the keystore's one auth value to the tpm package whenever it
// asks (tpm copies it to its own locked memory and wipes our copy). After
// the keystore handle is closed, identities that still ask get an error
// instead of a read of freed memory. After the TPM rejected the value it is
// wiped and never handed out again (each wrong offer costs a
// dictionary-attack try): every later request fails with LM_ERR_PIN until
// the keystore is opened again with a new value.
type tpmAuth struct {
	mu     sync.Mutex
	val    *secret.Buffer
	failed bool
}

func (a *tpmAuth) get(name string) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed {
		return nil, fmt.Errorf("the TPM rejected this keystore's auth value (for %s): close the keystore and open it with the right one: %w", name, keystore.ErrWrongPIN)
	}
	if a.val == nil {
		return nil, fmt.Errorf("auth value forgotten: keystore handle closed: %w", keystore.ErrClosed)
	}
	return append([]byte(nil), a.val.Bytes()...), nil
}

// rejected is tpm.Config.AuthFailed: drop the value for good.
func (a *tpmAuth) rejected(string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.val.Free()
	a.val = nil
	a.failed = true
}

func (a *tpmAuth) free() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.val.Free()
	a.val = nil
}

//export lm_keystore_open_tpm
func lm_keystore_open_tpm(device, keyDir *C.char, auth *C.uint8_t, authLen C.size_t, ks *C.uint64_t) (rc C.int) {
	defer guard(&rc)
	const fn = "lm_keystore_open_tpm"
	dir, good := goString(keyDir)
	if !good || dir == "" || ks == nil {
		return failf(errInvalidArg, "%s: NULL or empty argument", fn)
	}
	if authLen > 32 {
		return failf(errInvalidArg, "%s: auth value longer than 32 bytes", fn)
	}
	dev := ""
	if device != nil {
		dev = C.GoString(device)
	}
	v, err := lockedInput(auth, authLen)
	if err != nil {
		return fail(err, errInvalidArg)
	}
	a := &tpmAuth{val: v}
	cfg := tpm.Config{Dir: dir, Auth: a.get, AuthFailed: a.rejected}
	var k *tpm.Keystore
	switch {
	case strings.HasPrefix(dev, "unix:"):
		k, err = tpm.OpenSwtpmUnix(strings.TrimPrefix(dev, "unix:"), cfg)
	case strings.HasPrefix(dev, "tcp:"):
		host, port, perr := net.SplitHostPort(strings.TrimPrefix(dev, "tcp:"))
		pn, nerr := strconv.Atoi(port)
		if perr != nil || nerr != nil || pn < 1 || pn > 65534 {
			a.free()
			return failf(errInvalidArg, "%s: device must be tcp:HOST:PORT", fn)
		}
		k, err = tpm.OpenSwtpm(net.JoinHostPort(host, port), net.JoinHostPort(host, strconv.Itoa(pn+1)), cfg)
	default:
		k, err = tpm.OpenDevice(dev, cfg)
	}
	if err != nil {
		a.free()
		return fail(err, errKeystore)
	}
	*ks = newHandle(kindKeystore, &ksEntry{ks: k, free: a.free})
	return ok
}
