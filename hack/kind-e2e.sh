#!/usr/bin/env bash
# kind-based end-to-end run, for machines WITH Docker (the dev machines of this repo have none and use
# the local control plane instead: `make test`).
#
#   hack/kind-e2e.sh            # create cluster, build + load image, install chart, run the suites
#   KEEP_CLUSTER=1 hack/kind-e2e.sh
#
# Environment: KIND_CLUSTER (default strategy-rollouts-e2e), KIND_IMAGE (node image, optional),
# IMAGE (default strategy-rollouts:e2e), KEEP_CLUSTER=1 to leave the cluster running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER:-strategy-rollouts-e2e}"
IMAGE="${IMAGE:-strategy-rollouts:e2e}"
NAMESPACE="strategy-rollouts"
WORK="$(mktemp -d)"
KUBECONFIG_FILE="${WORK}/kubeconfig"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "kind-e2e: '$1' is required (install it first)" >&2; exit 1; }
}
need docker
need kind
need kubectl
need helm

cleanup() {
  local rc=$?
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    kind delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
    rm -rf "${WORK}"
  else
    echo "kind-e2e: cluster ${CLUSTER} kept; KUBECONFIG=${KUBECONFIG_FILE}"
  fi
  exit "${rc}"
}
trap cleanup EXIT

echo "kind-e2e: creating cluster ${CLUSTER}"
create_args=(create cluster --name "${CLUSTER}" --kubeconfig "${KUBECONFIG_FILE}" --wait 120s)
if [[ -n "${KIND_IMAGE:-}" ]]; then
  create_args+=(--image "${KIND_IMAGE}")
fi
if ! kind get clusters | grep -qx "${CLUSTER}"; then
  kind "${create_args[@]}"
else
  kind get kubeconfig --name "${CLUSTER}" >"${KUBECONFIG_FILE}"
fi
export KUBECONFIG="${KUBECONFIG_FILE}"

echo "kind-e2e: building ${IMAGE}"
docker build -t "${IMAGE}" "${ROOT}"
kind load docker-image "${IMAGE}" --name "${CLUSTER}"

echo "kind-e2e: installing the chart"
# The suites run operator processes on this machine as the kubeconfig's user: an operator identity of the
# status admission policies too (docs/rbac.md). The e2e suite installs the chart again, with the action
# ClusterRoles (fixed names, one release per cluster ships them): not from this release.
ME="$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}')"
helm upgrade --install strategy-rollouts "${ROOT}/charts/strategy-rollouts" \
  --namespace "${NAMESPACE}" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --set-json "admissionPolicy.operatorIdentity.users=[\"${ME}\"]" \
  --set rbac.actionRoles=false \
  --wait --timeout 180s
kubectl -n "${NAMESPACE}" rollout status deployment/strategy-rollouts --timeout=120s

echo "kind-e2e: running the integration and e2e suites against ${CLUSTER}"
cd "${ROOT}"
if [[ ! -x .venv/bin/pytest ]]; then
  make venv
fi
E2E_KUBECONFIG="${KUBECONFIG_FILE}" .venv/bin/pytest tests/integration tests/e2e -q -p no:cacheprovider
