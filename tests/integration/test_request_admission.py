"""The ValidatingAdmissionPolicy that pins `status.requests[*].by` to the writer, on the real API server.

Requests are written as a ServiceAccount (its own token, its own kubeconfig) and as the admin user,
with plain `kubectl patch --subresource=status --type=merge`, exactly as a person would. No operator
runs here: the namespace is outside the session operator's watch.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from strategy_rollouts.api.common import rfc3339
from tests.integration.workloads import Writer, service_account_writer
from tests.unit.rollout_sim import EXAMPLE

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

POLICY_MESSAGE = "status.requests: a request you add or change must have by:"
PARITY = {
    "strategy": "fib_rsi",
    "target": {"rollout": "fib-rsi"},
    "live": {"query": 'strategy_return{source="live"}'},
    "backtest": {"query": 'strategy_return{source="backtest"}'},
}


@pytest.fixture(scope="module")
def ns(cluster: DevCluster, crds: None) -> Iterator[str]:
    """A namespace no operator watches (the session operator only watches t<session>-*)."""
    name = f"adm-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def admin(cluster: DevCluster) -> str:
    name = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()
    assert name
    return name


@pytest.fixture(scope="module")
def requester(cluster: DevCluster, ns: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Writer, str]:
    """A ServiceAccount allowed to write requests in `ns`, and its user name."""
    return service_account_writer(cluster, ns, "requester", tmp_path_factory.mktemp("requester"))


def create(cluster: DevCluster, kind: str, name: str, ns: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "strategyrollouts.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(body))


def request(action: str, by: str, reason: str | None = None) -> dict[str, Any]:
    out = {"action": action, "by": by, "at": rfc3339(datetime.now(UTC))}
    return {**out, "reason": reason} if reason else out


def patch_args(kind: str, name: str, ns: str, status: dict[str, Any]) -> list[str]:
    body = json.dumps({"status": status})
    return ["patch", kind, name, "-n", ns, "--subresource=status", "--type=merge", "-p", body]


def as_admin(
    cluster: DevCluster, kind: str, name: str, ns: str, status: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(*patch_args(kind, name, ns, status), check=False)


def pending(cluster: DevCluster, kind: str, name: str, ns: str) -> dict[str, Any]:
    obj = json.loads(cluster.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)
    return dict((obj.get("status") or {}).get("requests") or {})


@pytest.fixture(scope="module")
def rollout(cluster: DevCluster, ns: str) -> str:
    """A StrategyRollout in `ns`, once the policy is in force (a freshly applied policy takes a moment)."""
    create(cluster, "StrategyRollout", "fib-rsi", ns, yaml.safe_load(EXAMPLE))
    deadline = time.monotonic() + 60
    for attempt in range(10_000):
        probe = as_admin(
            cluster, "strategyrollout", "fib-rsi", ns, {"requests": {f"probe-{attempt}": request("pause", "nobody")}}
        )
        if probe.returncode != 0 and POLICY_MESSAGE in probe.stderr:
            break
        assert time.monotonic() < deadline, f"the request admission policy is not in force: {probe.stderr}"
        time.sleep(0.5)
    stale = {k: None for k in pending(cluster, "strategyrollout", "fib-rsi", ns)}
    if stale:
        assert as_admin(cluster, "strategyrollout", "fib-rsi", ns, {"requests": stale}).returncode == 0
    return "fib-rsi"


def test_a_request_in_someone_elses_name_is_refused(
    cluster: DevCluster, ns: str, rollout: str, requester: tuple[Writer, str]
) -> None:
    writer, user = requester
    r = writer.run(
        *patch_args("strategyrollout", rollout, ns, {"requests": {"forged-1": request("abort", "alice", "x")}})
    )
    assert r.returncode != 0
    assert f'{POLICY_MESSAGE} "{user}" (your user name); refused: forged-1 (by "alice")' in r.stderr, r.stderr
    assert "forged-1" not in pending(cluster, "strategyrollout", rollout, ns)


def test_a_request_in_ones_own_name_is_accepted(
    cluster: DevCluster, ns: str, rollout: str, requester: tuple[Writer, str], admin: str
) -> None:
    writer, user = requester
    r = writer.run(*patch_args("strategyrollout", rollout, ns, {"requests": {"sa-1": request("pause", user, "news")}}))
    assert r.returncode == 0, r.stderr
    assert pending(cluster, "strategyrollout", rollout, ns)["sa-1"]["by"] == user
    # The admin adds its own; it cannot write in the ServiceAccount's name (nobody is exempt).
    assert (
        as_admin(cluster, "strategyrollout", rollout, ns, {"requests": {"adm-1": request("resume", admin)}}).returncode
        == 0
    )
    r = as_admin(cluster, "strategyrollout", rollout, ns, {"requests": {"adm-2": request("abort", user, "as you")}})
    assert r.returncode != 0 and POLICY_MESSAGE in r.stderr
    requests = pending(cluster, "strategyrollout", rollout, ns)
    assert {"sa-1", "adm-1"} <= set(requests) and "adm-2" not in requests


def test_the_operator_may_rewrite_status_but_not_change_anothers_request(
    cluster: DevCluster, ns: str, rollout: str, requester: tuple[Writer, str]
) -> None:
    writer, user = requester
    assert (
        writer.run(
            *patch_args("strategyrollout", rollout, ns, {"requests": {"sa-2": request("promote", user)}})
        ).returncode
        == 0
    )
    # A whole-status update that keeps the entry unchanged (what the operator's guarded PUT does) passes.
    assert (
        as_admin(cluster, "strategyrollout", rollout, ns, {"phase": "Progressing", "reason": "StepPaused"}).returncode
        == 0
    )
    # Changing someone else's pending request is refused: it would put words in their mouth.
    r = as_admin(cluster, "strategyrollout", rollout, ns, {"requests": {"sa-2": {"action": "abort"}}})
    assert r.returncode != 0 and 'refused: sa-2 (by "' + user + '")' in r.stderr, r.stderr
    assert pending(cluster, "strategyrollout", rollout, ns)["sa-2"]["action"] == "promote"
    # Removing it (handled) is allowed.
    assert as_admin(cluster, "strategyrollout", rollout, ns, {"requests": {"sa-2": None}}).returncode == 0
    assert "sa-2" not in pending(cluster, "strategyrollout", rollout, ns)


def test_two_peoples_requests_written_at_once_both_survive(
    cluster: DevCluster, ns: str, rollout: str, requester: tuple[Writer, str], admin: str
) -> None:
    writer, user = requester
    for round_ in range(5):
        mine, theirs = f"adm-race-{round_}", f"sa-race-{round_}"
        theirs_patch = patch_args("strategyrollout", rollout, ns, {"requests": {theirs: request("promote", user)}})
        procs = [
            subprocess.Popen(
                [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}",
                 *patch_args("strategyrollout", rollout, ns, {"requests": {mine: request("pause", admin)}})],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ),
            subprocess.Popen(
                writer.argv(*theirs_patch),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ),
        ]  # fmt: skip
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        requests = pending(cluster, "strategyrollout", rollout, ns)
        assert requests[mine]["by"] == admin and requests[theirs]["by"] == user


def test_parity_check_requests_are_pinned_too(
    cluster: DevCluster, ns: str, rollout: str, requester: tuple[Writer, str]
) -> None:
    writer, user = requester
    create(cluster, "ParityCheck", "fib-rsi-parity", ns, PARITY)
    r = writer.run(*patch_args("paritycheck", "fib-rsi-parity", ns, {"requests": {"run-1": request("run", "alice")}}))
    assert r.returncode != 0 and 'refused: run-1 (by "alice")' in r.stderr, r.stderr
    r = writer.run(*patch_args("paritycheck", "fib-rsi-parity", ns, {"requests": {"run-2": request("run", user)}}))
    assert r.returncode == 0, r.stderr
    assert pending(cluster, "paritycheck", "fib-rsi-parity", ns)["run-2"]["by"] == user
