# One entry point for humans and CI. `make test` installs everything it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
TOOLS := $(HOME)/.cache/strategy-rollouts/tools

.PHONY: help venv uv lock test unit integration lint typecheck crds crds-check manifests demo bench bench-soak chaos kind-e2e clean checkov helm promtool

help:
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# Dependencies are locked in uv.lock (every extra, every platform, with hashes); `make lock` refreshes it.
# uv itself lives in its own venv, cached per version like checkov; it never downloads a Python.
UV_VERSION := 0.13.10
UV := $(TOOLS)/uv-$(UV_VERSION)/bin/uv
export UV_PYTHON_DOWNLOADS := never
UV_SYNC := $(UV) sync --locked --python $(PYTHON)

uv: $(UV)
$(UV):
	rm -rf $(TOOLS)/uv-$(UV_VERSION) && $(PYTHON) -m venv $(TOOLS)/uv-$(UV_VERSION)
	$(TOOLS)/uv-$(UV_VERSION)/bin/pip install -q uv==$(UV_VERSION)

venv: $(VENV)/.installed ## create (or re-sync) .venv from uv.lock: the package (editable) and its dev extras

# --locked: fails when pyproject.toml changed without `make lock`; the sync is exact (removes what the lock lacks)
$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV_SYNC) --extra dev || { echo "make venv: uv sync failed; if uv.lock is stale (pyproject.toml changed): make lock" >&2; exit 1; }
	touch $@

# The image installs from requirements/image.txt and the quoter's from examples/quoter/requirements.txt, both
# exported from uv.lock here (hashes, the same versions). UPGRADE=1 lets every package move to its newest version.
lock: $(UV) ## refresh uv.lock (existing pins kept unless pyproject.toml needs others; UPGRADE=1: newest) and its exports
	$(UV) lock $(if $(UPGRADE),--upgrade)
	$(UV) export --frozen --quiet --no-emit-project --extra dashboard --output-file requirements/image.txt
	set -e; pins="$$(mktemp)"; trap 'rm -f "$$pins"' EXIT; \
	  $(UV) export --frozen --quiet --no-emit-project --all-extras --no-hashes --output-file "$$pins"; \
	  $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes --constraints "$$pins" \
	    --no-annotate --custom-compile-command "make lock" examples/quoter/requirements.in --output-file examples/quoter/requirements.txt

include devcluster/devcluster.mk

# Tools some tests need, each built or installed once and cached (a no-op when present): helm alone from
# devcluster/build.sh (not the whole control plane), promtool from Debian's prometheus, checkov below.
helm: ## build (or reuse) only helm into the binaries cache (the chart tests of `make unit`, `make manifests`)
	@bash devcluster/build.sh helm >/dev/null

promtool: ## apt: Debian's prometheus, for promtool (the alert-rule test of `make unit`)
	@bash devcluster/system-deps.sh prometheus

crds: venv helm ## regenerate crds/ and the chart's copy from the pydantic models (and what derives from them)
	$(PY) -m strategy_rollouts.api.crdgen --out crds --chart charts/strategy-rollouts/crds
	$(MAKE) -s manifests

manifests: venv helm ## kustomize install rendered from the chart, Argo CD config from its templates and Lua files, docs reference
	$(PY) manifests/install/render.py
	$(PY) manifests/argocd/generate.py
	$(PY) docs/gen_reference.py

crds-check: venv ## fail when crds/ differs from the models (fast, no cluster)
	$(PY) -m strategy_rollouts.api.crdgen --check --out crds --chart charts/strategy-rollouts/crds

lint: venv ## ruff + mypy + the import contract (pyproject.toml [tool.importlinter])
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check strategy_rollouts tests examples devcluster bench demo docs manifests
	$(VENV)/bin/ruff format --check strategy_rollouts tests examples devcluster bench demo docs manifests
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/quoter/quoter
	$(VENV)/bin/mypy demo

typecheck: venv ## mypy only
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/quoter/quoter
	$(VENV)/bin/mypy demo

unit: venv helm promtool checkov ## engine, model, chart and manifest tests, no cluster (installs helm, promtool, checkov once)
	$(VENV)/bin/pytest tests/unit -q -n 2

# checkov (third-party manifest scanner) in its own venv: its pins clash with ours. Cached per version.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := $(TOOLS)/checkov-$(CHECKOV_VERSION)
export CHECKOV := $(CHECKOV_VENV)/bin/checkov

checkov: $(CHECKOV) ## install (or reuse) checkov for the chart scan of `make unit` and `make test`
$(CHECKOV):
	rm -rf $(CHECKOV_VENV) && $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)

test: venv system-deps binaries checkov ## everything: installs, builds or reuses binaries, runs every test
	$(MAKE) -s crds-check
	$(MAKE) -s lint
	$(VENV)/bin/pytest tests/unit -q -p no:cacheprovider -n 2 --durations=10
	$(VENV)/bin/pytest tests -q -p no:cacheprovider --ignore=tests/unit --durations=25 --junitxml=.test-results.xml

integration: venv system-deps binaries ## the integration suite alone, on the local control plane it starts (tests/integration)
	$(VENV)/bin/pytest tests/integration -q -p no:cacheprovider --durations=15

demo: venv system-deps binaries ## the whole story on the local cluster: ShadowRun, rollout by symbol, a rollback, a parity cut (~3 min)
	$(PY) demo/run.py

chaos: venv system-deps binaries ## the chaos run of `make test`, longer: 50 operator kills (CHAOS_KILLS=N, CHAOS_SEED=S to replay)
	DEVCLUSTER_FRESH=1 CHAOS_KILLS=$${CHAOS_KILLS:-50} $(VENV)/bin/pytest tests/integration/test_chaos.py -q -s -p no:cacheprovider --timeout=3600

# The bench extra from the same lock: .venv synced with dev + bench (the next re-sync of `make venv` drops bench)
bench: venv system-deps binaries ## benchmarks (not tests), with Argo Rollouts side by side; QUICK=1: < 10 min
	$(UV_SYNC) --extra dev --extra bench
	DEVCLUSTER_CONTROLLER_QPS=$${DEVCLUSTER_CONTROLLER_QPS-200} $(PY) -m bench.run $(if $(QUICK),--quick)

bench-soak: venv system-deps binaries ## leak check: N=1,000 paused rollouts with gates for 1 h (BENCH_SOAK_N, BENCH_SOAK_S)
	$(UV_SYNC) --extra dev --extra bench
	DEVCLUSTER_CONTROLLER_QPS=$${DEVCLUSTER_CONTROLLER_QPS-200} $(PY) -m bench.soak

kind-e2e: ## (needs Docker; not runnable on the no-Docker dev machines) kind cluster + image + chart + e2e suite
	./hack/kind-e2e.sh

clean: ## remove .venv, .devcluster and the caches of pytest, mypy and ruff (not ~/.cache/strategy-rollouts)
	rm -rf $(VENV) .devcluster .pytest_cache .mypy_cache .ruff_cache
