# Cellar build targets. `make test` is what CI runs (see .ci/run and README).
GO ?= go
BIN := bin/cellar
PKGS := ./...

.PHONY: build test lint fmt vet bench e2e fuzz run crash clean

build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$$(git describe --tags --always 2>/dev/null || echo dev)" -o $(BIN) ./cmd/cellar

# Unit + real-PostgreSQL integration tests (PostgreSQL 15 binaries required).
test:
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -l . | tee /dev/stderr | (! read)

lint: fmt vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 $(PKGS) || echo "staticcheck unavailable"

# Benchmarks (not in CI): Go benchmarks; peer comparisons print ratios.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./wal/ ./catalog/ ./archive/...
	CELLAR_BENCH=1 $(GO) test -run 'Bench' -count=1 -timeout 60m -v ./bench/... 2>/dev/null || true

# Longer randomized trials (not in CI).
e2e: build
	CELLAR_E2E=1 $(GO) test -race -count=1 -timeout 60m -run 'E2E' $(PKGS)

FUZZTIME ?= 20s
fuzz:
	@for spec in wal:FuzzParseWALName wal:FuzzParseLSN wal:FuzzTimelineHistory catalog:FuzzXLogDBLine catalog:FuzzBackupInfo config:FuzzLoadConfig; do \
		pkg=$${spec%%:*}; fn=$${spec##*:}; \
		echo "== $$pkg $$fn"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) ./$$pkg/ || exit 1; \
	done

# The demo: throwaway PostgreSQL 15 + cellar daemon (see README).
run: build
	./scripts/demo.sh

clean:
	rm -rf bin
