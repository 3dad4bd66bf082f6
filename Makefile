# vatrun — make demo (the main job) and make test (the tests) work on a fresh Debian machine with
# Go, gcc, make and git: they install what they need when run as root, or name what is missing.
SHELL := /bin/bash
GO ?= go
BIN := bin
VATRUN := $(BIN)/vatrun
WORKER := $(BIN)/vatrun-testworker
# The same vatrun with the fault-injection pauses (VATRUN_TEST_PAUSE) compiled in, for the tests
# that SIGKILL vatrun at a chosen stage; bin/vatrun has no such hook.
HOOKS := $(BIN)/vatrun-hooks
GOFILES := $(shell find . -name '*.go' -not -path './test/e2e/.cache/*' -not -path '*/node_modules/*' 2>/dev/null)
CFILES := $(wildcard sandbox/*.c sandbox/*.h)
# vatrun is linked statically (glibc + libseccomp.a) so the same binary runs in the e2e VM.
STATIC_LDFLAGS := -linkmode external -extldflags "-static"
# vatrun version: the commit and git describe, for builds where Go's VCS stamping is off.
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
GIT_DESCRIBE := $(shell git describe --tags --always --dirty 2>/dev/null)
VERSION_LDFLAGS := -X main.buildCommit=$(GIT_COMMIT) -X main.buildVersionTag=$(GIT_DESCRIBE)
export CGO_ENABLED := 1

.PHONY: all build deps demo test unit vet e2e bench fuzz clean node js-test swingset runcdiff install uninstall

all: build

deps:
	@./scripts/deps.sh

build: deps $(VATRUN) $(WORKER) $(HOOKS)

$(VATRUN): $(GOFILES) $(CFILES) go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -trimpath -tags osusergo,netgo -ldflags '$(STATIC_LDFLAGS) $(VERSION_LDFLAGS)' -o $@ ./cmd/vatrun

$(HOOKS): $(GOFILES) $(CFILES) go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -trimpath -tags osusergo,netgo,vatrun_testhooks -ldflags '$(STATIC_LDFLAGS) $(VERSION_LDFLAGS)' -o $@ ./cmd/vatrun

$(WORKER): test/worker/worker.c
	@mkdir -p $(BIN)
	gcc -O2 -Wall -Wextra -static -o $@ test/worker/worker.c

demo: build
	@./scripts/demo.sh

vet: deps
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@./scripts/staticcheck.sh

# Unit and host integration tests (root + namespaces + seccomp here; tests that need more skip
# with a reason), the Node.js adapter's tests, the real SwingSet kernel through vatrun, then a
# short fuzz pass.
test: build vet
	VATRUN_E2E=0 VATRUN_BIN=$(CURDIR)/$(VATRUN) VATRUN_HOOKS_BIN=$(CURDIR)/$(HOOKS) VATRUN_TESTWORKER=$(CURDIR)/$(WORKER) $(GO) test -count=1 ./...
	@$(MAKE) --no-print-directory runcdiff
	@$(MAKE) --no-print-directory js-test
	@$(MAKE) --no-print-directory swingset
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# The seccomp filter against runc's own (libcontainer/seccomp) for the same OCI profiles: its own
# module (seccompprofiles/filter/runcdiff), so that runc's dependencies never reach bin/vatrun.
runcdiff: deps
	cd seccompprofiles/filter/runcdiff && $(GO) test -count=1 -tags seccomp .

NODE ?= node
node:
	@command -v $(NODE) >/dev/null 2>&1 || { echo "make: Node.js 20 ($(NODE)) is missing: the adapter (js/) and SwingSet tests need it; install it (Debian: apt-get install nodejs)"; exit 1; }

# The Node.js adapter (js/): node --test, against bin/vatrun and the C test worker.
js-test: build node
	cd js && VATRUN_BIN=$(CURDIR)/$(VATRUN) VATRUN_TESTWORKER=$(CURDIR)/$(WORKER) $(NODE) --test test/

# The real Agoric SwingSet kernel with xsnap workers through vatrun (test/swingset/README.md):
# setup.sh installs the pinned npm packages and builds xsnap-worker once.
swingset: build node
	@./test/swingset/setup.sh
	cd test/swingset && VATRUN_BIN=$(CURDIR)/$(VATRUN) $(NODE) --test

FUZZTIME ?= 60s
fuzz: deps
	@./scripts/fuzz.sh $(FUZZTIME)

e2e: build node
	@./test/swingset/setup.sh
	@./test/e2e/run.sh

bench: build
	@./scripts/bench.sh

# make install [PREFIX=/usr/local] [DESTDIR=]: bin/vatrun, the systemd unit (its paths rewritten to
# PREFIX), its README, and the example profiles. Builds bin/vatrun first if needed (as root, deps
# may be installed); `make build` as yourself, then `sudo make install`, installs what you built.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DATADIR ?= $(PREFIX)/share/vatrun
DOCDIR ?= $(PREFIX)/share/doc/vatrun
install: $(VATRUN)
	install -D -m 0755 $(VATRUN) $(DESTDIR)$(BINDIR)/vatrun
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR)/profiles $(DESTDIR)$(DOCDIR)/contrib/systemd
	sed -e 's|/usr/local/bin/vatrun|$(BINDIR)/vatrun|g' -e 's|file:///usr/share/doc/vatrun/|file://$(DOCDIR)/|g' \
	    contrib/systemd/vat-kernel.service > $(DESTDIR)$(UNITDIR)/vat-kernel.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/vat-kernel.service
	install -m 0644 contrib/systemd/README.md $(DESTDIR)$(DOCDIR)/contrib/systemd/README.md
	install -m 0644 examples/profiles/*.json $(DESTDIR)$(DATADIR)/profiles/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vatrun $(DESTDIR)$(UNITDIR)/vat-kernel.service $(DESTDIR)$(DOCDIR)/contrib/systemd/README.md
	rm -f $(addprefix $(DESTDIR)$(DATADIR)/profiles/,$(notdir $(wildcard examples/profiles/*.json)))
	-rmdir $(DESTDIR)$(DATADIR)/profiles $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)/contrib/systemd $(DESTDIR)$(DOCDIR)/contrib $(DESTDIR)$(DOCDIR) 2>/dev/null

clean:
	rm -rf $(BIN)
