# amem developer entry points. The two that matter: `make run` and `make test`.
# Every target installs what it needs into ./.venv first, so a clean clone needs nothing else.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

PROTO_SRC := $(shell find protos -name '*.proto')
PROTO_OUT := $(patsubst protos/%.proto,services/%_pb2.py,$(PROTO_SRC))

# pytest arguments, e.g. `make test PYTEST_ARGS='-k search -x'`.
PYTEST_ARGS ?=
# The real-LLM tier runs llama-server, built once from source and cached (~6 min the first time).
LLAMA_SERVER = AMEM_LLAMA_SERVER_BIN="$$(scripts/build-llama-server.sh)"

.PHONY: help install protos run test test-fast test-llm llama-server lint clean

help:
	@echo "make run    - run the whole system locally (REST API on http://127.0.0.1:$${AMEM_PORT:-8080})"
	@echo "make test   - lint, then every test tier against real processes (CI runs this)"
	@echo "make test-fast - lint and every test but the real-LLM tier"
	@echo "make test-llm  - only the real-LLM tier (llama-server with Gemma 3 270M)"
	@echo "make lint   - ruff"
	@echo "make protos - regenerate gRPC stubs from protos/"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "amem needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: a CPU build of 2.13.0 is on local disk, any other pulls CUDA wheels.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[embedding,evolution,dev]'
	touch $@

install: $(STAMP) protos

protos: $(PROTO_OUT)

services/%_pb2.py: protos/%.proto $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=services --pyi_out=services \
		--grpc_python_out=services $<

run: install
	$(PY) -m amem run

test: install lint
	$(LLAMA_SERVER) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install lint
	$(PY) -m pytest -m 'not slow_llm' $(PYTEST_ARGS)

test-llm: install
	$(LLAMA_SERVER) $(PY) -m pytest -m slow_llm $(PYTEST_ARGS)

llama-server: $(STAMP)
	scripts/build-llama-server.sh

lint: $(STAMP)
	$(PY) -m ruff check services tests
	$(PY) -m ruff format --check services tests

clean:
	rm -rf $(VENV) $(PROTO_OUT) $(PROTO_OUT:_pb2.py=_pb2.pyi) $(PROTO_OUT:_pb2.py=_pb2_grpc.py)
