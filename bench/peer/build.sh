#!/usr/bin/env bash
# Build (or reuse) the peer for `make bench`: the Argo Rollouts controller, from the Go module proxy.
# Its go.mod has replace directives (so `go install pkg@version` refuses it): build inside a copy of
# the module's source, with the Go toolchain its go.mod asks for (the proxy serves toolchains too).
# Output, on the last line of stdout: ~/.cache/strategy-rollouts/peer/argo-rollouts-<v>/
#   rollouts-controller, crds/*.yaml (the module's manifests/crds). Nothing of it is committed.
set -euo pipefail
ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.10.2}"
ARGO_ROLLOUTS_GO="${ARGO_ROLLOUTS_GO:-go1.26.10}"  # its go.mod: go 1.26.10
cache="${STRATEGY_ROLLOUTS_CACHE:-$HOME/.cache/strategy-rollouts}"
out="$cache/peer/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
log() { printf '[peer %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x "$out/rollouts-controller" ]] && "$out/rollouts-controller" --version 2>/dev/null | grep -q "${ARGO_ROLLOUTS_VERSION#v}"; then
  echo "$out"; exit 0
fi
mkdir -p "$out"
export GOTOOLCHAIN="$ARGO_ROLLOUTS_GO" CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath"
t0=$SECONDS
dir="$(cd /tmp && go mod download -json "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$dir" ]] || { log "module source not found"; exit 1; }
src="$out/src"
rm -rf "$src"; cp -r "$dir" "$src"; chmod -R u+w "$src"
log "building rollouts-controller $ARGO_ROLLOUTS_VERSION with $ARGO_ROLLOUTS_GO ..."
ld="-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${ARGO_ROLLOUTS_VERSION#v}"
(cd "$src" && go build -p "${BUILD_PARALLELISM:-2}" -ldflags "$ld" -o "$out/.rollouts-controller.tmp" ./cmd/rollouts-controller)
mv -f "$out/.rollouts-controller.tmp" "$out/rollouts-controller"
rm -rf "$out/crds"; cp -r "$src/manifests/crds" "$out/crds"
rm -rf "$src"
log "built in $((SECONDS - t0))s"
echo "$out"
