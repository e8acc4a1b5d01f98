"""The local control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok (via kwokctl's
binary runtime, fed with binaries built from source), plus a real Prometheus and Redis on loopback.

Entry points: ``python -m devcluster up|down|status|env|build`` and ``devcluster.cluster.DevCluster``.
"""

from devcluster.cluster import DevCluster

__all__ = ["DevCluster"]
