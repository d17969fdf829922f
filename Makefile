# cairn — see README.md. `make demo` and `make test` are the two set-up
# commands; both install the system packages they need (as root).

GO      ?= go
BIN     := bin/cairn
PKGS    := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test test-short demo bench lint deps clean install soak fuzz

# install (PREFIX, DESTDIR): the binary, the systemd unit and the man page.
PREFIX  ?= /usr/local
BINDIR  := $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  := $(PREFIX)/share/man/man1

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

# soak (DURATION, default 30m): the kill-anywhere soak test, long.
DURATION ?= 30m
soak: deps build
	CAIRN_BIN=$(CURDIR)/$(BIN) CAIRN_SOAK=$(DURATION) $(GO) test -count=1 -timeout 0 -v -run 'TestSoak$$' ./integration

# fuzz (FUZZTIME per target, default 10m; JOBS at a time, default 1;
# FUZZMINIMIZETIME per new corpus entry, default 5s): every fuzz target,
# one row each in fuzz.tsv.
FUZZTIME ?= 10m
JOBS ?= 1
fuzz:
	FUZZTIME=$(FUZZTIME) JOBS=$(JOBS) integration/fuzz.sh

demo: deps build
	@integration/demo.sh

bench: deps build
	@integration/bench/run.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/cairn
	sed 's|@BINDIR@|$(BINDIR)|g' cmd/cairn/cairn.service >$(DESTDIR)$(UNITDIR)/cairn.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cairn.service
	$(BIN) docs --man >$(DESTDIR)$(MANDIR)/cairn.1
	chmod 0644 $(DESTDIR)$(MANDIR)/cairn.1

clean:
	rm -rf bin
