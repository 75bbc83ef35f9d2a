# Every target installs what it needs into .venv (git ignores it); a fresh clone needs only
# python3 (3.9+) and, for the node-ipc interop tests, node and npm.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install demo demo-tcp demo-udp test bench bench-quick fuzz soak clean

help:
	@echo "make demo        a server and a client talking (Unix socket, then TCP), in colour"
	@echo "make demo-udp    the seed's UDP world and hello examples talking, in colour"
	@echo "make test        install into .venv and run the test suite"
	@echo "make bench       the W1-W4 benchmarks against the hand-written floor"
	@echo "make bench-quick a one-minute subset of make bench"
	@echo "make fuzz        a bounded fuzz run of the decoders"
	@echo "make soak        a long run with random disconnects (not part of make test)"

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# The seed's UDP World and Hello as two processes on two free UDP ports; hello exits
# once world answers (or fails after 10 s), then world is stopped.
demo-udp: $(STAMP)
	@set -- $$($(PY) -c 'import socket as s; ps = [s.socket(s.AF_INET, s.SOCK_DGRAM) for _ in "ab"]; [p.bind(("127.0.0.1", 0)) for p in ps]; print(*[p.getsockname()[1] for p in ps])'); \
	$(PY) examples/udp_world.py $$1 & world=$$!; \
	status=0; $(PY) examples/udp_hello.py $$1 $$2 || status=$$?; \
	kill $$world 2>/dev/null; wait $$world; exit $$status

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
