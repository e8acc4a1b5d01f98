# Local control plane targets (included by the top-level Makefile). See devcluster/README.md.
# Go lives in /usr/local/go/bin on these machines; make sure build.sh finds it.
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := $(PATH):/usr/local/go/bin
endif
# stdlib-only orchestration: any python3 works, the venv's if present
DEVCLUSTER_PY = $(shell test -x $(VENV)/bin/python && echo $(VENV)/bin/python || echo python3)

.PHONY: system-deps binaries argocd-binary dev-cluster dev-cluster-down dev-cluster-status

system-deps: ## apt: prometheus, redis, lua5.4, containerd, runc, CNI plugins, buildah... (no service started)
	@bash devcluster/system-deps.sh

binaries: ## build or reuse kube-*, kubectl, etcd, kwok, kwokctl, helm (~/.cache/strategy-rollouts/bin)
	@bash devcluster/build.sh >/dev/null

argocd-binary: ## build or reuse Argo CD's `argocd` from its Go module (~/.cache/strategy-rollouts/bin/argocd-<version>)
	@bash devcluster/argocd.sh binary

dev-cluster: system-deps binaries ## start (or reuse) the local control plane + Prometheus + Redis; leaves it running
	@$(DEVCLUSTER_PY) -m devcluster up

dev-cluster-down: ## stop every process dev-cluster started and remove .devcluster/
	@$(DEVCLUSTER_PY) -m devcluster down

dev-cluster-status:
	@$(DEVCLUSTER_PY) -m devcluster status

.PHONY: image
image: system-deps ## build strategy-rollouts:dev + quoter:dev with buildah (no registry; cached base) and load them into the real node
	@bash devcluster/image.sh
