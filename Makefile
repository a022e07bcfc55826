# make test | make bench | make lint -- each sets up what it needs.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: test bench lint setup system-deps clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Debian's serf (interop tests, benchmarks) and dnsutils (dig); installed when missing and we are root.
system-deps:
	@missing=""; \
	command -v serf >/dev/null 2>&1 || missing="$$missing serf"; \
	command -v dig  >/dev/null 2>&1 || missing="$$missing dnsutils"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing -- run: sudo apt-get install$$missing (interop tests will be skipped)"; \
	  fi; \
	fi

test: setup
	$(VPY) -m pytest

lint: $(STAMP)
	$(VPY) -m ruff check protocol agent tests bench

bench: setup
	$(VPY) bench/gossip_vs_serf.py

clean:
	rm -rf $(VENV)
