#!/usr/bin/env bash
# Install the Debian packages the dev cluster and tests need. Quick no-op when present.
# Services are never started by apt (policy-rc.d), and any daemon that still appears is stopped:
# we run prometheus, redis and containerd ourselves (loopback / the cluster's own bridge).
#   system-deps.sh               every package below
#   system-deps.sh prometheus    only those (`make promtool`: the alert-rule test of `make unit`)
set -euo pipefail
pkgs=(prometheus redis-server lua5.4 procps openssl ca-certificates chromium
  # the real node (devcluster/realnode.py) and `make image` (devcluster/image.sh)
  containerd runc containernetworking-plugins iptables iproute2 conntrack socat util-linux debootstrap buildah)
if (($# > 0)); then pkgs=("$@"); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "system-deps: all present (${pkgs[*]})"
  exit 0
fi
sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "system-deps: installing ${missing[*]}"
created_policy=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[[ -n "$created_policy" ]] && $sudo rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Belt and braces: no Debian-managed daemon on the default ports.
for svc in prometheus redis-server prometheus-node-exporter containerd; do
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else
    $sudo service "$svc" stop >/dev/null 2>&1 || true
  fi
done
echo "system-deps: done"
