# loramesh-core. `make run` runs the main job, `make test` every test.
# Both install the system packages they need (apt-get as root, sudo otherwise).

SHELL := /bin/bash
GO ?= go
# runtime/secret erases what the primitives leave on stacks and heaps.
export GOEXPERIMENT := runtimesecret
export LORAMESH_REQUIRE_ERASURE := 1
# Debian's interpreter, which has python3-pytest (the default python3 may not).
PYTHON ?= /usr/bin/python3
DEBS := softhsm2 opensc swtpm swtpm-tools tpm2-tools tpm2-openssl python3-pytest python3-serial python3-setuptools gcc libc6-dev python3-wheel python3-venv socat chromium
FUZZTIME ?= 3s
LIB := build/libloramesh.so
# The browser build: loramesh.wasm, its loader and the example page.
WEB := build/web
WASMEXEC := $(shell $(GO) env GOROOT)/lib/wasm
WASMENV := GOOS=js GOARCH=wasm
# What builds for js/wasm, vetted and tested there too.
WASMPKGS := ./core ./messenger ./keystore ./keystore/webcrypto ./internal/secret ./internal/prim ./internal/jsutil ./cmd/wasm

.PHONY: all build lib deps test gotest wasmtest webtest pytest fuzz run bench vet clean wasm

all: build lib

build:
	$(GO) build ./...

lib: $(LIB)

$(LIB): $(shell find capi core keystore -name '*.go' -o -name '*.h' -o -name '*.c' 2>/dev/null) go.mod
	mkdir -p build
	$(GO) build -buildmode=c-shared -o $(LIB) ./capi
	rm -f build/libloramesh.h

wasm: $(WEB)/loramesh.wasm

$(WEB)/loramesh.wasm: $(shell find cmd/wasm core keystore messenger internal -name '*.go' 2>/dev/null) web/loramesh.js $(wildcard examples/web/*) go.mod
	mkdir -p $(WEB)
	GOOS=js GOARCH=wasm $(GO) build -trimpath -ldflags="-s -w" -o $(WEB)/loramesh.wasm ./cmd/wasm
	cp $(WASMEXEC)/wasm_exec.js web/loramesh.js examples/web/index.html examples/web/app.js $(WEB)/

deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
		else echo "missing packages ($$missing) and neither root nor sudo: install them by hand" >&2; exit 1; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(WASMENV) $(GO) vet -tags browser $(WASMPKGS)

test: deps vet lib gotest wasmtest fuzz pytest webtest

gotest:
	$(GO) test -race -count=1 ./...

# Under node (go_js_wasm_exec): the same core tests (handshake vectors,
# interop with flynn/noise) and engine tests as natively, and the browser
# keystore's. The 10,000-session locked-memory test and the lossy soak stay
# native: wasm has no locked memory to measure, and the soak is the same
# engine code as the two-node tests, ten times slower under node.
wasmtest:
	$(WASMENV) $(GO) test -count=1 -exec=$(WASMEXEC)/go_js_wasm_exec \
		-skip '^(TestTenThousandSessionsLockedMemory|TestLossySoak)$$' $(filter-out ./internal/jsutil ./cmd/wasm,$(WASMPKGS))

# In headless Chromium (tests/web): the browser keystore's tests that need
# IndexedDB and WebAuthn (with a virtual authenticator that has the PRF
# extension; fuzz seeds need a file system, so FuzzParseRecord runs natively
# and under node only), then the example page with a CLI daemon end to end.
webtest: wasm lib
	mkdir -p build/webtest
	$(WASMENV) $(GO) test -c -tags browser -o build/webtest/webcrypto.wasm ./keystore/webcrypto
	$(PYTHON) tests/web/gotest.py build/webtest/webcrypto.wasm -test.skip '^Fuzz'
	LORAMESH_LIB=$(CURDIR)/$(LIB) PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q tests/web

# Each fuzz target for a few seconds (FUZZTIME), from its committed corpus.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null || exit 1; \
		done; \
	done

pytest: lib
	@if [ -d python/tests ]; then \
		echo "pytest with $(PYTHON) ($$($(PYTHON) --version))"; \
		LORAMESH_LIB=$(CURDIR)/$(LIB) PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q python/tests; \
	fi

run: deps lib
	@if [ -x tests/run_demo.sh ]; then tests/run_demo.sh; else $(GO) run ./cmd/demo; fi

# The Python row compares against the cryptography package when present.
bench: DEBS += python3-cryptography
bench: deps lib
	$(GO) run ./tests/bench

clean:
	rm -rf build
