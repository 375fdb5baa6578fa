# zktwist: `make run` starts a standalone server with etc/zktwist.cfg; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-long test-fast system-deps clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# compat mode puts the checkout on sys.path, so twistd finds twisted/plugins/zktwist_plugin.py
	$(PY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

run: $(STAMP)
	mkdir -p var/zktwist
	$(VENV)/bin/twistd -n --pidfile= zktwist --config etc/zktwist.cfg

# Apache ZooKeeper 3.8 (the differential oracle), zkCli.sh, the C client and Curator come
# from Debian's packages, node-zookeeper-client from npm. Where they cannot be installed
# (not root, no apt-get or npm) the tests that need them say so and skip; under CI=true
# they fail instead.
system-deps:
	@if [ -e /usr/share/java/zookeeper.jar ] && command -v java >/dev/null; then \
		echo "Apache ZooKeeper 3.8 is installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zookeeper zookeeper-bin; \
	else \
		echo "NOTE: cannot install Debian's zookeeper package (not root or no apt-get):"; \
		echo "      the differential and zkCli.sh tests will be skipped."; \
	fi
	-@bash tests/clients/install.sh debian node

test: $(STAMP) system-deps
	$(PY) -m pytest -q -m "not slow" --durations=15 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/protocol

test-long: $(STAMP) system-deps
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) var build *.egg-info
