# vatrun — make demo (the main job) and make test (the tests) work on a fresh Debian machine with
# Go, gcc, make and git: they install what they need when run as root, or name what is missing.
SHELL := /bin/bash
GO ?= go
BIN := bin
VATRUN := $(BIN)/vatrun
WORKER := $(BIN)/vatrun-testworker
GOFILES := $(shell find . -name '*.go' -not -path './test/e2e/.cache/*' 2>/dev/null)
CFILES := $(wildcard sandbox/*.c sandbox/*.h)
# vatrun is linked statically (glibc + libseccomp.a) so the same binary runs in the e2e VM.
STATIC_LDFLAGS := -linkmode external -extldflags "-static"
export CGO_ENABLED := 1

.PHONY: all build deps demo test unit vet e2e bench fuzz clean

all: build

deps:
	@./scripts/deps.sh

build: deps $(VATRUN) $(WORKER)

$(VATRUN): $(GOFILES) $(CFILES) go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -trimpath -tags osusergo,netgo -ldflags '$(STATIC_LDFLAGS)' -o $@ ./cmd/vatrun

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
# with a reason), then a short fuzz pass.
test: build vet
	VATRUN_E2E=0 VATRUN_BIN=$(CURDIR)/$(VATRUN) VATRUN_TESTWORKER=$(CURDIR)/$(WORKER) $(GO) test -count=1 ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

FUZZTIME ?= 60s
fuzz: deps
	@./scripts/fuzz.sh $(FUZZTIME)

e2e: build
	@./test/e2e/run.sh

bench: build
	@./scripts/bench.sh

clean:
	rm -rf $(BIN)
