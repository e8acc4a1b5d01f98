"""Shared fixtures. ``cluster`` (session) is the real local control plane + Prometheus + Redis; it is
only started when a test asks for it, so tests/unit never starts anything."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

_MARKED_DIRS = {"integration": ("integration",), "e2e": ("integration", "e2e")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(tests_dir)
        except ValueError:
            continue
        for marker in _MARKED_DIRS.get(rel.parts[0], ()):
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def cluster() -> Iterator[DevCluster]:
    """The control plane for this session: E2E_KUBECONFIG's, a running `make dev-cluster` (reused,
    left running), or a fresh one stopped at session end."""
    from devcluster.cluster import session_cluster

    old = os.environ.get("KUBECONFIG")
    with session_cluster() as c:
        os.environ["KUBECONFIG"] = str(c.kubeconfig)
        try:
            yield c
        finally:
            if old is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old


# Namespaces of this session share a prefix, so this session's operator watches only them
# (several sessions may share one dev cluster).
SESSION_NAMESPACE_PREFIX = f"t{uuid.uuid4().hex[:6]}-"


@contextlib.contextmanager
def fresh_namespace(cluster: DevCluster, prefix: str = SESSION_NAMESPACE_PREFIX) -> Iterator[str]:
    """A fresh namespace t<session>-<random> (or `prefix`<random>), deleted afterwards (without waiting
    for finalization)."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # Pods are admitted only once the namespace's default ServiceAccount exists
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=30s")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def namespace(cluster: DevCluster) -> Iterator[str]:
    with fresh_namespace(cluster) as name:
        yield name


@pytest.fixture
def other_namespace(cluster: DevCluster) -> Iterator[str]:
    """A second fresh namespace (a stage with its own namespace)."""
    with fresh_namespace(cluster) as name:
        yield name
