# make run | make test | make bench | make lint -- each sets up what it needs.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: run test bench lint setup system-deps bench-deps clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Debian's serf (interop tests, benchmarks), dnsutils (dig) and chromium (the web page's browser test);
# installed when missing and we are root, otherwise the tests that need them are skipped with the reason.
system-deps:
	@missing=""; \
	command -v serf >/dev/null 2>&1 || missing="$$missing serf"; \
	command -v dig  >/dev/null 2>&1 || missing="$$missing dnsutils"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing -- run: sudo apt-get install$$missing (the tests needing them will be skipped)"; \
	  fi; \
	fi

run: setup
	$(VPY) -m agent -dev

# The suite mostly waits on timers and sockets, not the CPU: pytest-xdist runs it in TEST_WORKERS processes, a test
# file per worker at a time (tests/procs.py gives each worker its own loopback addresses and ports), the longest
# files first (tests/conftest.py's LONGEST_FILES_FIRST; xdist's own reorder would send them last).
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3

test: setup
	$(VPY) -m ruff check protocol agent tests bench
	$(VPY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(VPY) -m ruff check protocol agent tests bench

# dnsperf and dnsmasq (the reference C server) for the DNS benchmark; tcpdump counts gossip packets.
bench-deps:
	@missing=""; \
	command -v dnsperf >/dev/null 2>&1 || missing="$$missing dnsperf"; \
	command -v dnsmasq >/dev/null 2>&1 || missing="$$missing dnsmasq-base"; \
	command -v tcpdump >/dev/null 2>&1 || missing="$$missing tcpdump"; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

bench: setup bench-deps
	$(VPY) bench/gossip_vs_serf.py
	$(VPY) bench/sim_scale.py
	bash bench/dns_bench.sh
	$(VPY) bench/raft_vs_etcd.py
	$(VPY) bench/kv_vs_etcd.py

clean:
	rm -rf $(VENV)
