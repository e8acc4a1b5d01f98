#!/usr/bin/env bash
# `make image`: build strategy-rollouts:dev (./Dockerfile) and quoter:dev (examples/quoter/Dockerfile) with
# buildah, without a registry: the base is debootstrapped from the machine's Debian mirror (cached: the base
# archive is made once), a python base FROM it (devcluster/images/python-base.Containerfile), then the
# project's Dockerfiles unchanged, with the base as the PYTHON_IMAGE build arg (their defaults stay the
# public python images). The images are saved as archives under ~/.cache/strategy-rollouts/images/ and
# imported into the running real node's containerd (namespace k8s.io), if there is one.
# Prints the seconds each step took; appends them to images/build-times.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$(dirname "$here")"
cache="${STRATEGY_ROLLOUTS_CACHE:-$HOME/.cache/strategy-rollouts}/images"
mkdir -p "$cache"
lock="${DEVCLUSTER_REAL_NODE_LOCK:-/run/lock/strategy-rollouts-real-node.lock}"
# buildah's storage of our own (not the machine-wide /var/lib/containers), kept for warm layer caches
bh=(buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver overlay)
ca=/etc/ssl/certs/ca-certificates.crt
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has() { "${bh[@]}" inspect --type image "$1" >/dev/null 2>&1; }
t_all=$SECONDS

base_tar="$cache/debian-bookworm-minbase.oci.tar"
if ! has localhost/debian:bookworm; then
  if [[ ! -s "$base_tar" ]]; then
    t0=$SECONDS
    # the first Debian archive the machine's apt uses (deb822 `URIs:` or one-line `deb` sources)
    mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
      | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?$|https?://[^ ]+/debian/? ' | head -1 | tr -d ' ' || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase bookworm from $mirror (once; cached as $base_tar)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    c="$("${bh[@]}" from scratch)"
    "${bh[@]}" add "$c" "$rootfs/" / >/dev/null
    "${bh[@]}" config --cmd /bin/bash "$c"
    "${bh[@]}" commit -q "$c" localhost/debian:bookworm >/dev/null
    "${bh[@]}" rm "$c" >/dev/null
    "${bh[@]}" push -q localhost/debian:bookworm "oci-archive:$base_tar:localhost/debian:bookworm"
    rm -rf "$rootfs"; trap - EXIT
    log "base image made in $((SECONDS - t0))s"
  else
    "${bh[@]}" pull -q "oci-archive:$base_tar" >/dev/null
    "${bh[@]}" tag "$("${bh[@]}" images -q --filter reference='*debian*' | head -1)" localhost/debian:bookworm 2>/dev/null || true
  fi
fi

bud() { # bud TAG CONTEXT DOCKERFILE [build args...]
  local tag="$1" ctx="$2" file="$3" t0=$SECONDS; shift 3
  log "buildah bud $tag ($file)"
  "${bh[@]}" bud -q --layers --isolation chroot --network host -f "$file" -t "$tag" "$@" "$ctx" >/dev/null
  log "built $tag in $((SECONDS - t0))s"
  echo "$(date -u +%FT%TZ) $tag $((SECONDS - t0))s" >>"$cache/build-times.log"
}
py=localhost/python:3.11-bookworm
has "$py" || bud "$py" "$here/images" "$here/images/python-base.Containerfile"
# pip reaches PyPI through the machine's TLS-intercepting proxy: its CA bundle, for the RUN steps only
# (not in the base build: ca-certificates' postinst rewrites that file)
# DEVCLUSTER_IMAGES: a subset to build (`make demo` needs only the quoter's); default both
images="${DEVCLUSTER_IMAGES:-strategy-rollouts quoter}"
for name in $images; do
  case "$name" in
    strategy-rollouts) bud localhost/strategy-rollouts:dev "$root" "$root/Dockerfile" --build-arg "PYTHON_IMAGE=$py" -v "$ca:$ca:ro" ;;
    quoter) bud localhost/quoter:dev "$root/examples/quoter" "$root/examples/quoter/Dockerfile" --build-arg "PYTHON_IMAGE=$py" -v "$ca:$ca:ro" ;;
    *) echo "DEVCLUSTER_IMAGES: unknown image $name (strategy-rollouts, quoter)" >&2; exit 2 ;;
  esac
done

for name in $images; do
  out="$cache/$name-dev.tar"
  rm -f "$out"
  # docker-archive names it docker.io/library/NAME:dev in containerd: what the kubelet looks up for NAME:dev
  "${bh[@]}" push -q "localhost/$name:dev" "docker-archive:$out:$name:dev"
done

if [[ -z "${DEVCLUSTER_IMAGE_NO_IMPORT:-}" && -s "$lock" ]] && work="$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["work_dir"])' "$lock" 2>/dev/null)" \
   && [[ -S "$work/containerd.sock" ]]; then
  for name in $images; do
    ctr -a "$work/containerd.sock" -n k8s.io images import --platform linux/amd64 "$cache/$name-dev.tar" >/dev/null
  done
  log "imported $images (:dev) into the real node ($work)"
else
  log "no real node running: the archives in $cache are imported when a test or the dev cluster needs them"
fi
log "done in $((SECONDS - t_all))s"
echo "$(date -u +%FT%TZ) total $((SECONDS - t_all))s" >>"$cache/build-times.log"
