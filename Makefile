# Cellar build targets. `make test` is what CI runs (see .ci/run and README).
GO ?= go
BIN := bin/cellar
PKGS := ./...

.PHONY: build test lint fmt vet bench e2e fuzz run clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$$(git describe --tags --always 2>/dev/null || echo dev) -X main.revision=$$(git rev-parse HEAD 2>/dev/null)" -o $(BIN) ./cmd/cellar

# Unit + real-PostgreSQL integration tests (PostgreSQL 15 from Debian, 13/14/16/17/18
# from scripts/install-pg.sh).
test:
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: fmt vet
	$(GO) run $(STATICCHECK) $(PKGS)
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

# Benchmarks (not in CI). Go micro-benchmarks, then the peer comparisons
# (barman, pgbackrest, pg_basebackup, pg_receivewal measured in the same run,
# ratios printed). CELLAR_BENCH_SCALE sets the pgbench scale (default 100).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./wal/ ./catalog/ ./archive/
	$(GO) test -tags bench -run 'Bench' -count=1 -v -timeout 60m ./backup/ ./recovery/
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 10m ./incremental/
	./bench/install-peers.sh
	$(GO) test -tags bench -run 'Peer' -count=1 -v -timeout 90m ./bench/

# Longer randomized trials (not in CI): 20+ randomized PITR restores.
e2e: build
	$(GO) test -tags e2e -race -count=1 -timeout 60m -run 'E2E' ./...

# Every fuzz target in the tree, found automatically (scripts/fuzz.sh).
FUZZTIME ?= 20s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# The demo: throwaway PostgreSQL 15 + cellar daemon (see README).
run: build
	./scripts/demo.sh

clean:
	rm -rf bin
