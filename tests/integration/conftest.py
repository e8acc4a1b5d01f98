"""Integration fixtures: CRDs installed once, the real operator process for the session."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from strategy_rollouts.testing.operator_process import OperatorProcess

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds(cluster: DevCluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
    # Also on a reused dev cluster or an E2E_KUBECONFIG one: the status is the operator's (docs/rbac.md); this
    # kubeconfig's user, which runs the operator processes of the tests, is its identity.
    cluster.apply_status_policy()


@pytest.fixture(scope="session")
def operator(cluster: DevCluster, crds: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The real operator, as a separate process watching every namespace. Tests may kill and restart it."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    from tests.conftest import SESSION_NAMESPACE_PREFIX

    proc = OperatorProcess(
        cluster.kubeconfig, cluster.prometheus_url, log, namespaces=(f"{SESSION_NAMESPACE_PREFIX}*",)
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        errors = [line for line in proc.log().splitlines() if "Traceback" in line]
        print(f"operator log: {log} ({len(errors)} tracebacks)")


@pytest.fixture
def live_operator(operator: OperatorProcess) -> OperatorProcess:
    """The session operator, restarted if an earlier test left it stopped."""
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()
    return operator


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(cmd, capture_output=True, text=True, **kw)
