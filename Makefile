# RipTrace. `make demo` runs the whole system on an embedded NATS server;
# `make test` is what CI runs.

GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Tests attach with ptrace and start many processes: keep package
# parallelism at the machine's size, and give the slow ones room.
TESTFLAGS ?= -count=1 -timeout 20m

# Node packages of the tests that drive riptrace with clients we did not
# write (VS Code's debug adapter and language server clients).
NPM_DIRS := $(patsubst %/package-lock.json,%,$(shell git ls-files '*package-lock.json' 2>/dev/null))

.PHONY: build demo test deps bench bench-limits bench-perhit bench-agent bench-timeline bench-resources bench-fleet lint clean fuzz vsix e2e-vscode e2e-web web-ui kill-matrix stress-int3 differential

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/riptrace ./demo/gateway ./demo/orders ./demo/payments

# demo ends with the same checkout as a scenario, judged by its
# expectations (examples/scenarios/checkout.yaml).
demo: build
	$(BIN)/riptrace demo
	@echo; echo "==> the checkout as a scenario: $(BIN)/riptrace run examples/scenarios/checkout.yaml"
	$(BIN)/riptrace run examples/scenarios/checkout.yaml

# deps installs the test's Node packages where they are missing or stale.
deps:
	@for d in $(NPM_DIRS); do \
		if [ ! -d $$d/node_modules ] || [ $$d/package-lock.json -nt $$d/node_modules ]; then \
			echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
		fi; \
	done

test: deps
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

# differential traces every line of the corpus programs (the test targets
# and the demo services, optimized and not) with both backends and fails
# where the eBPF backend shows a value other than Delve's; `make test` runs
# a representative subset of it.
differential:
	RIPTRACE_CORPUS=full $(GO) test $(TESTFLAGS) -run '^TestCorpus$$' -v ./agent/ebpf

# fuzz runs every fuzz target (func FuzzX in a _test.go file) for FUZZTIME
# in turn; `make test` runs only their seeds. A failure stops here and
# leaves the failing input under the package's testdata/fuzz.
FUZZTIME ?= 30s
fuzz:
	@for f in $$(grep -rl --include='*_test.go' --exclude-dir=node_modules '^func Fuzz' . | sort); do \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$name ($$(dirname $$f)) for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f) || exit 1; \
		done; \
	done

# vsix packages the VS Code extension (editors/vscode) offline.
vsix: deps
	@mkdir -p $(BIN)
	cd editors/vscode && VSIX=$(CURDIR)/$(BIN)/riptrace.vsix npm run --silent vsix

# e2e-vscode runs the extension in the real VS Code (code-server, headless
# Chromium) against a real fleet; the first run installs them into
# ~/.cache/riptrace-e2e.
e2e-vscode: build vsix
	editors/vscode/e2e/run.sh

# web-ui rebuilds the web page's script (web/static/app.js, committed and
# embedded in the binary) from web/ui/src; make test checks it is current.
web-ui: deps
	cd web/ui && npm run --silent build

# e2e-web runs the server's web page in real Chromium (playwright-core)
# against a real fleet; it shares the install of e2e-vscode in
# ~/.cache/riptrace-e2e. Screenshots land in web/e2e/out/.
e2e-web:
	@cache=$$(editors/vscode/e2e/setup.sh | tail -1) && \
		RIPTRACE_E2E_CACHE=$$cache $(GO) test -count=1 -timeout 10m -run '^TestChromium' -v ./web

bench: build
	./bench/run.sh

# stress-int3 runs the Delve backend's int3 mode against a target that ends
# a thread every millisecond, its breakpoint taken out and put back every
# 5 ms, RUNS times, and prints how many runs failed. Not in make test: a
# few runs in a hundred still fail through int3 mode's open problems
# (README, "What a tracepoint may ask").
RUNS ?= 20
stress-int3:
	@mkdir -p $(BIN)
	@RIPTRACE_STRESS_INT3=1 $(GO) test -count=$(RUNS) -timeout 60m -run '^TestInt3ThreadEndsWhileStopping$$' -v ./agent/delve > $(BIN)/stress-int3.log 2>&1; \
		status=$$?; echo "failed $$(grep -c '^--- FAIL' $(BIN)/stress-int3.log) of $(RUNS) runs"; grep -E '^\s+\S+_test.go:[0-9]+:' $(BIN)/stress-int3.log | sort | uniq -c | sort -rn | head; \
		echo "full log: $(BIN)/stress-int3.log"; exit $$status

# kill-matrix SIGKILLs the agent, the Delve worker and its watchdog in every
# combination, KILLS times each at random instants, on a hot and a cool line
# of a self-checking target, in both modes of the Delve backend (uprobe, and
# the int3 fallback), and prints survived/total per fault and line. make
# test runs 2 of each in uprobe mode.
KILLS ?= 20
kill-matrix:
	@mkdir -p $(BIN)
	@RIPTRACE_KILL_MATRIX=$(KILLS) $(GO) test -count=1 -timeout 60m -run '^TestKillMatrix$$' -v ./agent/delve > $(BIN)/kill-matrix.log 2>&1; \
		status=$$?; grep -E 'kill matrix|did not survive|^(--- FAIL|ok|FAIL)' $(BIN)/kill-matrix.log; \
		echo "full log: $(BIN)/kill-matrix.log"; exit $$status

# bench-limits: requests/s of an HTTP service with a tracepoint on a hot
# loop, with the default limits and with none, against untraced.
bench-limits: build
	$(GO) run ./bench/limits

# bench-fleet: 1000 simulated agents on a three-server cluster: a debug
# session's CPU with 3 agents and 1000, the servers' memory and CPU per
# agent, declare to installed, sustained hits/s at rising rates into a
# real debug session, language server and timeline, failover, the
# reconnect herd of a cluster restart; one met/not met line per goal
# (bench/fleet/main.go). BENCH_FLEET_FLAGS=-sustained-only runs only the
# sustained hits/s runs (-readers=false: into the stream alone).
bench-fleet: build
	$(GO) run ./bench/fleet $(BENCH_FLEET_FLAGS)

# bench-timeline: hits placed in the order they ran against arrival order:
# latency from capture to the timeline (p50, p99), the ordering's hits/s
# on one core, a client's cost per hit; met or not met for each goal.
bench-timeline:
	$(GO) run ./bench/timeline

# bench-resources: the agent's memory, CPU and stop time with one line
# traced in 50 processes of one program, against one process.
bench-resources: build
	$(GO) run ./bench/resources

# lint: go vet, gofmt and staticcheck at a pinned version, run through the
# module proxy so that nothing needs installing (the first run builds it).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN)

# bench-perhit: what a hit of the eBPF backend costs a hot loop against a
# bare uprobe, with the BPF programs' own run time from the kernel's
# statistics, alternating runs in one process (bench/perhit).
bench-perhit:
	$(GO) run ./bench/perhit $(BENCH_PERHIT_FLAGS)

# bench-agent: the eBPF agent's CPU time and page faults per hit it decodes
# and publishes, alone, on make bench's hot loop (bench/agentcpu); with
# BENCH_AGENT_FLAGS='-vs OTHER_RIPTRACE', two binaries alternated run by
# run and the ratio of their medians. About 30 s a run.
bench-agent: build
	$(GO) run ./bench/agentcpu $(BENCH_AGENT_FLAGS)
