# cairn — see README.md. `make demo` and `make test` are the two set-up
# commands; both install the system packages they need (as root).

GO      ?= go
BIN     := bin/cairn
PKGS    := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test test-short demo bench lint deps clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cairn

# deps installs the outside tools the tests, demo and benchmarks use.
deps:
	@integration/install-deps.sh

test: deps build
	CAIRN_BIN=$(CURDIR)/$(BIN) $(GO) test -race -timeout 15m $(PKGS)

test-short: build
	CAIRN_BIN=$(CURDIR)/$(BIN) $(GO) test -short -timeout 5m $(PKGS)

demo: deps build
	@integration/demo.sh

bench: deps build
	@integration/bench/run.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

clean:
	rm -rf bin
