# RipTrace. `make demo` runs the whole system on an embedded NATS server;
# `make test` is what CI runs.

GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Tests attach with ptrace and start many processes: keep package
# parallelism at the machine's size, and give the slow ones room.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: build demo test bench lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/riptrace ./demo/gateway ./demo/orders ./demo/payments

demo: build
	$(BIN)/riptrace demo

test:
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

bench: build
	./bench/run.sh

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@if command -v staticcheck >/dev/null; then staticcheck ./...; fi

clean:
	rm -rf $(BIN)
