// Package tpmsim lends the in-process TPM simulator (go-tpm-tools) to tests,
// benchmarks and demos. It is never linked into the library: the simulator
// is a TPM with known seeds.
package tpmsim

import (
	"sync"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
)

// The simulator is C. A cgo call inside runtime/secret.Do (core.Protect in
// GOEXPERIMENT=runtimesecret builds) crashes Go 1.26, so every command runs
// on one long-lived goroutine outside any secret.Do; only parameter-
// encrypted bytes cross over. One simulator per process: a second open
// would block.
var (
	once  sync.Once
	sim   transport.TPMCloser
	err   error
	calls = make(chan call)
)

type call struct {
	cmd  []byte
	done chan result
}

type result struct {
	rsp []byte
	err error
}

// Transport is a handle on the process's simulator; Close leaves it running
// for the next user.
type Transport struct{}

// Open starts the simulator on first use and returns a transport to it.
func Open() (Transport, error) {
	once.Do(func() {
		if sim, err = simulator.OpenSimulator(); err == nil {
			go serve()
		}
	})
	return Transport{}, err
}

func serve() {
	for c := range calls {
		rsp, err := sim.Send(c.cmd)
		c.done <- result{rsp, err}
	}
}

// Send runs cmd on the simulator goroutine.
func (Transport) Send(cmd []byte) ([]byte, error) {
	c := call{cmd, make(chan result, 1)}
	calls <- c
	r := <-c.done
	return r.rsp, r.err
}

// Close does nothing: the simulator lives as long as the process.
func (Transport) Close() error { return nil }
