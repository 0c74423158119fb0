# loramesh-core. `make run` runs the main job, `make test` every test.
# Both install the system packages they need (apt-get as root, sudo otherwise).

SHELL := /bin/bash
GO ?= go
# runtime/secret erases what the primitives leave on stacks and heaps.
export GOEXPERIMENT := runtimesecret
export LORAMESH_REQUIRE_ERASURE := 1
# Debian's interpreter, which has python3-pytest (the default python3 may not).
PYTHON ?= /usr/bin/python3
DEBS := softhsm2 opensc swtpm swtpm-tools tpm2-tools tpm2-openssl python3-pytest python3-pytest-xdist python3-serial python3-setuptools gcc libc6-dev python3-wheel python3-venv socat tor chromium
FUZZTIME ?= 2s
LIB := build/libloramesh.so
VERSION := $(shell sed -n 's/^const Version = "\(.*\)"/\1/p' capi/main.go)
# Everything the library is built from (tests and tools excluded).
LIBSRC := $(shell find capi core keystore messenger internal \( -name '*.go' ! -name '*_test.go' \) -o -name '*.h' -o -name '*.c' 2>/dev/null) go.mod go.sum

# Field devices: `make cross` builds the library for these GOARCHes into
# build/linux-GOARCH/ (libloramesh.so, libloramesh.a, loramesh.h and the
# pkg-config files loramesh.pc and loramesh-static.pc) with Debian's cross
# compilers; `make crosstest` runs the tests that matter on the boards under
# qemu-user (tests/cross). 32-bit ARM is built for ARMv7 (Debian armhf).
CROSS_ARCHES := amd64 arm64 arm
CROSS_GOARM := 7
CROSS_CC_amd64 := gcc
CROSS_CC_arm64 := aarch64-linux-gnu-gcc
CROSS_CC_arm := arm-linux-gnueabihf-gcc
CROSS_DEBS := gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross \
	qemu-user-static pkgconf
CROSS_OUT := $(foreach a,$(CROSS_ARCHES),$(addprefix build/linux-$(a)/,libloramesh.so libloramesh.a loramesh.h loramesh.pc loramesh-static.pc))

.PHONY: all build lib deps test gotest wasmtest webtest pytest tortest fuzz run bench vet clean wasm cross cross-deps crosstest sysroots

# The browser build: loramesh.wasm, its loader and the example page.
WEB := build/web
WASMEXEC := $(shell $(GO) env GOROOT)/lib/wasm
WASMENV := GOOS=js GOARCH=wasm
# What builds for js/wasm, vetted and tested there too.
WASMPKGS := ./core ./messenger ./keystore ./keystore/webcrypto ./internal/secret ./internal/prim ./internal/jsutil ./cmd/wasm

all: build lib

build:
	$(GO) build ./...

lib: $(LIB)

$(LIB): $(LIBSRC)
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

test: deps vet lib gotest wasmtest fuzz pytest tortest crosstest webtest

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
		LORAMESH_LIB=$(CURDIR)/$(LIB) PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q -n 3 python/tests; \
	fi

# The onion link and two daemons on a private Tor network, in a network
# namespace of its own (tests/tor/README.md). Needs root, or unprivileged
# user namespaces.
tortest: deps lib
	LORAMESH_LIB=$(CURDIR)/$(LIB) PYTHONPATH=$(CURDIR)/python $(PYTHON) tests/tor/run.py -q

run: deps lib
	@if [ -x tests/run_demo.sh ]; then tests/run_demo.sh; else $(GO) run ./cmd/demo; fi

# The Python row compares against the cryptography package when present.
bench: DEBS += python3-cryptography
bench: deps lib cross
	$(GO) run ./tests/bench

# ---- cross builds -----------------------------------------------------------

cross-deps:
	@$(MAKE) --no-print-directory deps DEBS="$(CROSS_DEBS)"

cross: cross-deps
	@$(MAKE) --no-print-directory $(CROSS_OUT)

# GOARCH of a build/linux-GOARCH/ target, and its build environment.
cross_env = CGO_ENABLED=1 GOOS=linux GOARCH=$(1) $(if $(filter arm,$(1)),GOARM=$(CROSS_GOARM)) CC=$(CROSS_CC_$(1))

build/linux-%/libloramesh.so: $(LIBSRC)
	@mkdir -p $(@D)
	$(call cross_env,$*) $(GO) build -buildmode=c-shared -o $@ ./capi
	@rm -f $(@D)/libloramesh.h

build/linux-%/libloramesh.a: $(LIBSRC)
	@mkdir -p $(@D)
	$(call cross_env,$*) $(GO) build -buildmode=c-archive -o $@ ./capi
	@rm -f $(@D)/libloramesh.h

build/linux-%/loramesh.h: capi/loramesh.h
	@mkdir -p $(@D)
	cp $< $@

# pkg-config files that find their directory themselves (${pcfiledir}), so
# build/linux-GOARCH/ can be copied anywhere: loramesh.pc links the shared
# library, loramesh-static.pc the archive (plus what the Go runtime and
# dlopen of PKCS#11 modules need from libc).
build/linux-%/loramesh.pc: Makefile
	@mkdir -p $(@D)
	printf '%s\n' 'prefix=$${pcfiledir}' 'libdir=$${prefix}' 'includedir=$${prefix}' '' \
		'Name: loramesh' 'Description: loramesh-core C ABI (linux/$*), shared library' 'Version: $(VERSION)' \
		'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lloramesh -Wl,-rpath,$${libdir}' > $@

build/linux-%/loramesh-static.pc: Makefile
	@mkdir -p $(@D)
	printf '%s\n' 'prefix=$${pcfiledir}' 'libdir=$${prefix}' 'includedir=$${prefix}' '' \
		'Name: loramesh-static' 'Description: loramesh-core C ABI (linux/$*), static archive' 'Version: $(VERSION)' \
		'Cflags: -I$${includedir}' 'Libs: $${libdir}/libloramesh.a -pthread -ldl' > $@

# Minimal Debian roots of the emulated architectures (tests/cross/sysroot.sh):
# python3 for the binding's tests, libcrypto for keystore/tpm's simulator,
# SoftHSM's module. Reused while its package list is unchanged.
sysroots:
	tests/cross/sysroot.sh arm64 build/cross/root-arm64
	tests/cross/sysroot.sh armhf build/cross/root-armhf

crosstest: cross sysroots
	$(GO) vet -tags cross ./tests/cross
	$(GO) test -tags cross -count=1 -timeout 25m -v ./tests/cross

clean:
	rm -rf build
