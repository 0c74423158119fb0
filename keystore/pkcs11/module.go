package pkcs11

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

// registry holds every module this package has loaded, by resolved path, so
// a module is initialised once per process however many keystores use it.
var registry = struct {
	sync.Mutex
	modules map[string]*module
}{modules: map[string]*module{}}

type module struct {
	path   string
	ctx    *p11.Ctx
	fl     *funcList // the same module's function list, for secretcalls.go
	owner  bool      // our C_Initialize succeeded, so C_Finalize is ours too
	tokens map[uint]*token
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
	if m.fl, err = functionList(abs); err != nil {
		if m.owner {
			ctx.Finalize()
		}
		ctx.Destroy()
		return nil, err
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
