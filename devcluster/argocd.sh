#!/usr/bin/env bash
# Argo CD from the Go module proxy, to test our health checks and actions in Argo CD's own code and to
# run a real Argo CD against the dev cluster. Nothing of Argo CD is committed; everything is cached:
#   ~/.cache/strategy-rollouts/argocd/<version>/src/   a writable copy of the module's source (its
#       go.mod has replace directives, so it is built inside its own module, not required by ours)
#   ~/.cache/strategy-rollouts/bin/argocd-<version>/argocd   (`argocd.sh binary`)
# Usage: argocd.sh src | binary    prints the directory / the binary on the last line of stdout.
# Idempotent: the copy is made (and its dependencies downloaded) once per version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${STRATEGY_ROLLOUTS_CACHE:-$HOME/.cache/strategy-rollouts}"
v="$ARGOCD_VERSION"
root="$cache/argocd/$v"
src="$root/src"
module="github.com/argoproj/argo-cd/v3"

# GOTOOLCHAIN=auto: the toolchain the module's go.mod asks for (fetched from the proxy if newer).
export GOTOOLCHAIN=auto GOFLAGS="-buildvcs=false"
export GOMAXPROCS="${GOMAXPROCS:-2}"
P="${BUILD_PARALLELISM:-2}"
[[ -n "$(command -v go)" || ! -x /usr/local/go/bin/go ]] || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "argocd.sh: Go toolchain not found on PATH" >&2; exit 1; }
log() { printf '[argocd %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

prepare_src() {
  [[ -f "$src/.ready" ]] && return 0
  local t0=$SECONDS dir tmp
  log "downloading $module@$v ..."
  dir="$(cd / && go mod download -json "$module@$v" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || { echo "argocd.sh: go mod download gave no directory for $module@$v" >&2; exit 1; }
  mkdir -p "$root"
  tmp="$(mktemp -d "$root/.src.XXXXXX")"
  cp -a "$dir/." "$tmp/"
  chmod -R u+w "$tmp"
  (cd "$tmp" && go mod download)   # every dependency, so later test runs need no network
  rm -rf "$src"
  mv "$tmp" "$src"
  touch "$src/.ready"
  log "source ready in $src ($((SECONDS - t0))s)"
}

build_binary() {
  local out="$cache/bin/argocd-$v" t0=$SECONDS
  if [[ -x "$out/argocd" ]] && "$out/argocd" version --client --short 2>/dev/null | grep -q "${v#v}"; then
    return 0
  fi
  mkdir -p "$out"
  log "building argocd $v (-p $P) ..."
  local pkg="$module/common"
  (cd "$src" && CGO_ENABLED=0 go build -p "$P" -trimpath \
    -ldflags "-s -w -X $pkg.version=${v#v} -X $pkg.gitTag=$v -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
    -o "$out/.argocd.tmp" ./cmd)
  mv -f "$out/.argocd.tmp" "$out/argocd"
  log "built argocd in $((SECONDS - t0))s"
}

case "${1:-src}" in
  src) prepare_src; echo "$src" ;;
  binary) prepare_src; build_binary; echo "$cache/bin/argocd-$v/argocd" ;;
  *) echo "usage: $0 src|binary" >&2; exit 2 ;;
esac
