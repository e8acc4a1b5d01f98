#!/usr/bin/env bash
# Build (or reuse) the local control plane's binaries from the Go module proxy.
# Output: one directory keyed by every pinned version, printed on the last line of stdout:
#   ~/.cache/strategy-rollouts/bin/k8s-<v>_etcd-<v>_kwok-<v>_helm-<v>/
# Idempotent: a binary is rebuilt only when it is missing or its --version check fails.
#   build.sh            every binary
#   build.sh helm ...   only those (`make helm`: the chart tests of `make unit` need helm alone)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${STRATEGY_ROLLOUTS_CACHE:-$HOME/.cache/strategy-rollouts}"
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
out="$cache/bin/$key"
mkdir -p "$out"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -trimpath"
export GOMAXPROCS="${GOMAXPROCS:-2}"
P="${BUILD_PARALLELISM:-2}"
command -v go >/dev/null || { echo "build.sh: Go toolchain not found on PATH" >&2; exit 1; }

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
names=" $* "
known=" kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy pause etcd kwok kwokctl helm "
for n in "$@"; do [[ "$known" == *" $n "* ]] || { echo "build.sh: unknown binary $n (one of:$known)" >&2; exit 2; }; done
want() { [[ "$names" == "  " || "$names" == *" $1 "* ]]; } # no argument: every binary

# ok NAME ARGS... : the binary exists and its version command works and mentions the pin
ok() {
  local bin="$out/$1" want="$2"; shift 2
  [[ -x "$bin" ]] || return 1
  local v; v="$("$bin" "$@" 2>&1)" || return 1
  [[ "$v" == *"$want"* ]]
}

hb=""
heartbeat_start() { # print a line every minute while a long build runs
  local name="$1" t0=$SECONDS
  ( n=0; while sleep 5; do n=$((n + 5)); ((n % 60)) || log "... still building $name ($((SECONDS - t0))s)"; done ) &
  hb=$!
}
heartbeat_stop() {
  if [[ -n "$hb" ]]; then kill "$hb" 2>/dev/null || true; wait "$hb" 2>/dev/null || true; hb=""; fi
}
trap heartbeat_stop EXIT

build() { # build NAME MODULE_DIR PACKAGE LDFLAGS
  local name="$1" dir="$2" pkg="$3" ldflags="$4" t0=$SECONDS
  log "building $name ($pkg) ..."
  heartbeat_start "$name"
  (cd "$dir" && go build -p "$P" -ldflags "$ldflags" -o "$out/.$name.tmp" "$pkg")
  heartbeat_stop
  mv -f "$out/.$name.tmp" "$out/$name"
  log "built $name in $((SECONDS - t0))s"
}

install_tool() { # install_tool NAME PACKAGE@VERSION LDFLAGS
  local name="$1" pkg="$2" ldflags="$3" t0=$SECONDS tmp
  log "building $name ($pkg) ..."
  tmp="$(mktemp -d)"
  heartbeat_start "$name"
  GOBIN="$tmp" go install -p "$P" -ldflags "$ldflags" "$pkg"
  heartbeat_stop
  mv -f "$tmp/$name" "$out/$name"; rmdir "$tmp"
  log "built $name in $((SECONDS - t0))s"
}

kv="$KUBERNETES_VERSION"; kminor="${kv#v1.}"; kminor="${kminor%%.*}"
kld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kld+=" -X $p.gitVersion=$kv -X $p.gitMajor=1 -X $p.gitMinor=$kminor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  want "$c" || continue
  ok "$c" "$kv" --version || build "$c" "$here/gowrap/kubernetes" "k8s.io/kubernetes/cmd/$c" "$kld"
done
! want kubectl || ok kubectl "$kv" version --client || build kubectl "$here/gowrap/kubernetes" "k8s.io/kubernetes/cmd/kubectl" "$kld"
# the real node (devcluster/realnode.py): kubelet and kube-proxy from the same source, and a sandbox image's program
! want kubelet || ok kubelet "$kv" --version || build kubelet "$here/gowrap/kubernetes" "k8s.io/kubernetes/cmd/kubelet" "$kld"
! want kube-proxy || ok kube-proxy "$kv" --version || build kube-proxy "$here/gowrap/kubernetes" "k8s.io/kubernetes/cmd/kube-proxy" "$kld"
! want pause || [[ -x "$out/pause" ]] || build pause "$here/gowrap/pause" . "-s -w"

! want etcd || ok etcd "${ETCD_VERSION#v}" --version || build etcd "$here/gowrap/etcd" . "-s -w"

kwld="-s -w -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
! want kwok || ok kwok "$KWOK_VERSION" --version || install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "$kwld"
! want kwokctl || ok kwokctl "$KWOK_VERSION" --version || install_tool kwokctl "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}" "$kwld"

hld="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
! want helm || ok helm "$HELM_VERSION" version --short || install_tool helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" "$hld"

log "binaries ready in $out"
echo "$out"
