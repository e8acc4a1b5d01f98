# One entry point for humans and CI. `make test` installs everything it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv test unit integration lint typecheck crds crds-check manifests demo bench bench-soak chaos kind-e2e clean checkov

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

venv: $(VENV)/.installed ## create .venv with the package and its dev extras

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

include devcluster/devcluster.mk

crds: venv ## regenerate crds/ and the chart's copy from the pydantic models (and what derives from them)
	$(PY) -m strategy_rollouts.api.crdgen --out crds --chart charts/strategy-rollouts/crds
	$(MAKE) -s manifests

manifests: venv ## kustomize install rendered from the chart, Argo CD config from its Lua files, docs reference
	$(PY) manifests/install/render.py
	$(PY) manifests/argocd/generate.py
	$(PY) docs/gen_reference.py

crds-check: ## fail when crds/ differs from the models (fast, no cluster)
	@test -x $(PY) || $(MAKE) -s venv
	$(PY) -m strategy_rollouts.api.crdgen --check --out crds --chart charts/strategy-rollouts/crds

lint: venv ## ruff + mypy + the import contract (pyproject.toml [tool.importlinter])
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check strategy_rollouts tests examples devcluster bench demo docs manifests
	$(VENV)/bin/ruff format --check strategy_rollouts tests examples devcluster bench demo docs manifests
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/quoter/quoter
	$(VENV)/bin/mypy demo

typecheck: venv
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/quoter/quoter
	$(VENV)/bin/mypy demo

unit: venv ## engine and model tests, milliseconds each, no cluster
	$(VENV)/bin/pytest tests/unit -q

# checkov (third-party manifest scanner) in its own venv: its pins clash with ours. Cached per version.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := $(HOME)/.cache/strategy-rollouts/tools/checkov-$(CHECKOV_VERSION)
export CHECKOV := $(CHECKOV_VENV)/bin/checkov

checkov: $(CHECKOV) ## install (or reuse) checkov for the chart scan of `make test`
$(CHECKOV):
	rm -rf $(CHECKOV_VENV) && $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)

test: venv system-deps binaries checkov ## everything: installs, builds or reuses binaries, runs every test
	$(MAKE) -s crds-check
	$(MAKE) -s lint
	$(VENV)/bin/pytest tests -q -p no:cacheprovider --durations=15

demo: venv system-deps binaries ## the whole story on the local cluster: ShadowRun, rollout by symbol, a rollback, a parity cut (~3 min)
	$(PY) demo/run.py

chaos: venv system-deps binaries ## the chaos run of `make test`, longer: 50 operator kills (CHAOS_KILLS=N, CHAOS_SEED=S to replay)
	DEVCLUSTER_FRESH=1 CHAOS_KILLS=$${CHAOS_KILLS:-50} $(VENV)/bin/pytest tests/integration/test_chaos.py -q -s -p no:cacheprovider --timeout=3600

bench: venv system-deps binaries ## benchmarks (not tests), with Argo Rollouts side by side; QUICK=1: < 10 min
	$(PY) -m pip install -q -e '.[dev,bench]'
	DEVCLUSTER_CONTROLLER_QPS=$${DEVCLUSTER_CONTROLLER_QPS-200} $(PY) -m bench.run $(if $(QUICK),--quick)

bench-soak: venv system-deps binaries ## leak check: N=1,000 paused rollouts with gates for 1 h (BENCH_SOAK_N, BENCH_SOAK_S)
	$(PY) -m pip install -q -e '.[dev,bench]'
	DEVCLUSTER_CONTROLLER_QPS=$${DEVCLUSTER_CONTROLLER_QPS-200} $(PY) -m bench.soak

kind-e2e: ## (needs Docker; not runnable on the no-Docker dev machines) kind cluster + image + chart + e2e suite
	./hack/kind-e2e.sh

clean:
	rm -rf $(VENV) .devcluster .pytest_cache .mypy_cache .ruff_cache
