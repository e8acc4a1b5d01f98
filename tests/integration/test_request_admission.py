"""The status admission policies (docs/rbac.md) on the real API server: the status is the operator's.

Anyone else may only ADD requests to `status.requests`, in their own name, each needing the RBAC verb
of its action on `<kind>/actions`; nobody else changes another status field or a pending request.
Writes are made as ServiceAccounts (their own tokens, their own kubeconfigs) with only some verbs, and
as the admin user, who is the operator's identity on the test cluster (the session's operator process
runs with the admin kubeconfig: DevCluster.apply_status_policy), with plain
`kubectl patch --subresource=status --type=merge`, exactly as a person would, and with the plugin. No
operator runs here: the namespace is outside the session operator's watch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from devcluster.cluster import POLICY_RELEASE
from strategy_rollouts.api.common import rfc3339
from tests.integration.workloads import Writer, service_account_writer
from tests.unit.rollout_sim import EXAMPLE

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(sys.executable).parent / "kubectl-strategy"
BY_MESSAGE = "status.requests: a request you add or change must have by:"
OPERATOR_ONLY = ": only the operator may change"
DROPPED = "status.requests: only the operator may remove or change a pending request; refused:"
PARITY = {
    "strategy": "fib_rsi",
    "target": {"rollout": "fib-rsi"},
    "live": {"query": 'strategy_return{source="live"}'},
    "backtest": {"query": 'strategy_return{source="backtest"}'},
}
SHADOW = {
    "strategy": "fib_rsi",
    "live": {"deployment": "fib-rsi-legacy", "version": "v1.0.0"},
    "shadow": {"deployment": "fib-rsi-pipeline", "version": "v2.0.0"},
    "duration": "1h",
}
# The requester may do some things, not others (docs/rbac.md: each action is its own verb).
REQUESTER_VERBS = ("promote", "pause", "resume", "retry")


def now() -> str:
    return rfc3339(datetime.now(UTC))


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
    name = cluster.whoami()
    assert name and name in cluster.operator_identities(), "the test cluster's admin is the operator's identity"
    return name


@pytest.fixture(scope="module")
def requester(cluster: DevCluster, ns: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Writer, str]:
    """A ServiceAccount that may read objects, patch their status and request promote/pause/resume/retry
    (and a ParityCheck run) in `ns`, and its user name."""
    return service_account_writer(cluster, ns, "requester", tmp_path_factory.mktemp("requester"), REQUESTER_VERBS)


@pytest.fixture(scope="module")
def other(cluster: DevCluster, ns: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Writer, str]:
    """Another person, with every verb."""
    return service_account_writer(cluster, ns, "other", tmp_path_factory.mktemp("other"))


def create(cluster: DevCluster, kind: str, name: str, ns: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "strategyrollouts.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(body))


def request(action: str, by: str, reason: str | None = None) -> dict[str, Any]:
    out = {"action": action, "by": by, "at": now()}
    return {**out, "reason": reason} if reason else out


def patch_args(kind: str, name: str, ns: str, status: dict[str, Any]) -> list[str]:
    body = json.dumps({"status": status})
    return ["patch", kind, name, "-n", ns, "--subresource=status", "--type=merge", "-p", body]


def as_admin(
    cluster: DevCluster, kind: str, name: str, ns: str, status: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(*patch_args(kind, name, ns, status), check=False)


def write(
    who: tuple[Writer, str], status: dict[str, Any], name: str, ns: str, kind: str = "strategyrollout"
) -> subprocess.CompletedProcess[str]:
    return who[0].run(*patch_args(kind, name, ns, status))


def current(cluster: DevCluster, kind: str, name: str, ns: str) -> dict[str, Any]:
    obj = json.loads(cluster.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)
    return dict(obj.get("status") or {})


def pending(cluster: DevCluster, kind: str, name: str, ns: str) -> dict[str, Any]:
    return dict(current(cluster, kind, name, ns).get("requests") or {})


def refused(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode != 0, f"accepted: {r.stdout}"
    assert "denied request" in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, f"{needle!r} not in: {r.stderr}"


def accepted(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, r.stderr


# A status as the operator records it mid-rollout: a target with assignments, an approval given, a request
# handled. Seeded by the admin, the operator's identity here.
SEEDED = {
    "phase": "Paused",
    "reason": "AwaitingApproval",
    "message": "1 of 2 approvals (alice) for stage prod",
    "stage": "prod",
    "stageIndex": 1,
    "stepIndex": 0,
    "canaryWeight": 50,
    "targets": [
        {
            "namespace": "trading",
            "configMap": "fib-rsi-routing",
            "weight": 50,
            "assignments": {"BTCUSDT": "v1.0.0", "ETHUSDT": "v2.0.0"},
        }
    ],
    "approvals": [{"by": "alice", "at": "2026-01-05T10:00:00Z", "reason": "risk ok", "stage": "prod"}],
    "handledRequests": [
        {"id": "h-1", "action": "pause", "by": "alice", "outcome": "Applied", "at": "2026-01-05T09:00:00Z"}
    ],
}


def in_force(cluster: DevCluster, who: tuple[Writer, str], kind: str, name: str, ns: str) -> None:
    """Wait until the policies are in force for this kind (a freshly applied policy takes a moment)."""
    deadline = time.monotonic() + 60
    while True:
        probe = write(who, {"message": f"probe {time.monotonic()}"}, name, ns, kind)
        if probe.returncode != 0 and OPERATOR_ONLY in probe.stderr:
            return
        assert time.monotonic() < deadline, f"the status admission policy is not in force: {probe.stderr}"
        time.sleep(0.5)


def clear_requests(cluster: DevCluster, kind: str, name: str, ns: str) -> None:
    stale = {k: None for k in pending(cluster, kind, name, ns)}
    if stale:
        accepted(as_admin(cluster, kind, name, ns, {"requests": stale}))


@pytest.fixture(scope="module")
def rollout(cluster: DevCluster, ns: str, requester: tuple[Writer, str]) -> str:
    """A StrategyRollout in `ns` with a seeded status, once the policy is in force."""
    create(cluster, "StrategyRollout", "fib-rsi", ns, yaml.safe_load(EXAMPLE))
    in_force(cluster, requester, "strategyrollout", "fib-rsi", ns)
    accepted(as_admin(cluster, "strategyrollout", "fib-rsi", ns, SEEDED))
    return "fib-rsi"


@pytest.fixture
def fresh(cluster: DevCluster, ns: str, rollout: str) -> str:
    """The rollout with no pending request and the seeded status back."""
    clear_requests(cluster, "strategyrollout", rollout, ns)
    accepted(as_admin(cluster, "strategyrollout", rollout, ns, SEEDED))
    return rollout


# ---- the status beyond requests is the operator's -------------------------------------------------


def test_writing_approvals_is_refused(cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]) -> None:
    """The reproduced forgery: an approval in another user's name written straight into status.approvals."""
    _, user = requester
    forged = [*SEEDED["approvals"], {"by": "bob", "at": now(), "reason": "lgtm", "stage": "prod"}]  # type: ignore[list-item]
    refused(write(requester, {"approvals": forged}, fresh, ns), f"status.approvals{OPERATOR_ONLY}", "docs/rbac.md")
    mine = [*SEEDED["approvals"], {"by": user, "at": now(), "reason": "lgtm", "stage": "prod"}]  # type: ignore[list-item]
    refused(write(requester, {"approvals": mine}, fresh, ns), f"status.approvals{OPERATOR_ONLY}")
    refused(write(requester, {"approvals": []}, fresh, ns), f"status.approvals{OPERATOR_ONLY}")
    assert current(cluster, "strategyrollout", fresh, ns)["approvals"] == SEEDED["approvals"]


def test_editing_target_assignments_is_refused(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    target = dict(SEEDED["targets"][0])  # type: ignore[index]
    edited = [{**target, "assignments": {"BTCUSDT": "v2.0.0", "ETHUSDT": "v2.0.0"}}]
    refused(write(requester, {"targets": edited}, fresh, ns), f"status.targets{OPERATOR_ONLY}")
    assert current(cluster, "strategyrollout", fresh, ns)["targets"][0]["assignments"]["BTCUSDT"] == "v1.0.0"


def test_editing_stage_index_and_phase_is_refused_naming_each_field(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    r = write(requester, {"stageIndex": 0, "phase": "Progressing", "tradingStopped": True}, fresh, ns)
    refused(r, f"status.phase, status.stageIndex, status.tradingStopped{OPERATOR_ONLY}")
    st = current(cluster, "strategyrollout", fresh, ns)
    assert (st["stageIndex"], st["phase"], st["tradingStopped"]) == (1, "Paused", False)


def test_editing_or_removing_a_handled_request_is_refused(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    before = current(cluster, "strategyrollout", fresh, ns)["handledRequests"]
    refused(write(requester, {"handledRequests": []}, fresh, ns), f"status.handledRequests{OPERATOR_ONLY}")
    edited = [{**before[0], "outcome": "Rejected"}]
    refused(write(requester, {"handledRequests": edited}, fresh, ns), f"status.handledRequests{OPERATOR_ONLY}")
    assert current(cluster, "strategyrollout", fresh, ns)["handledRequests"] == before


def test_a_request_cannot_ride_along_with_another_change(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    _, user = requester
    r = write(requester, {"requests": {"ride-1": request("pause", user)}, "stageIndex": 2}, fresh, ns)
    refused(r, f"status.stageIndex{OPERATOR_ONLY}")
    assert "ride-1" not in pending(cluster, "strategyrollout", fresh, ns)


# ---- requests: only new ones, in one's own name ---------------------------------------------------


def test_a_request_in_someone_elses_name_is_refused(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    _, user = requester
    r = write(requester, {"requests": {"forged-1": request("pause", "alice", "x")}}, fresh, ns)
    refused(r, f'{BY_MESSAGE} "{user}" (your user name); refused: forged-1 (by "alice")')
    assert "forged-1" not in pending(cluster, "strategyrollout", fresh, ns)


def test_deleting_or_editing_another_users_pending_request_is_refused(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str], other: tuple[Writer, str]
) -> None:
    _, them = other
    accepted(write(other, {"requests": {"theirs-1": request("abort", them, "bad fills")}}, fresh, ns))
    refused(write(requester, {"requests": {"theirs-1": None}}, fresh, ns), f'{DROPPED} theirs-1 (by "{them}")')
    # Changing it (here: to a weaker action) is refused too: it would put words in their mouth.
    r = write(requester, {"requests": {"theirs-1": {"action": "pause"}}}, fresh, ns)
    refused(r)
    assert pending(cluster, "strategyrollout", fresh, ns)["theirs-1"]["action"] == "abort"


def test_one_cannot_withdraw_or_edit_ones_own_pending_request(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    _, user = requester
    accepted(write(requester, {"requests": {"mine-1": request("pause", user, "news")}}, fresh, ns))
    refused(write(requester, {"requests": {"mine-1": None}}, fresh, ns), f'{DROPPED} mine-1 (by "{user}")')
    refused(write(requester, {"requests": {"mine-1": {"reason": "other news"}}}, fresh, ns), DROPPED)
    assert pending(cluster, "strategyrollout", fresh, ns)["mine-1"]["reason"] == "news"


def test_one_request_per_write(cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]) -> None:
    _, user = requester
    two = {"requests": {"two-1": request("pause", user), "two-2": request("resume", user)}}
    refused(write(requester, two, fresh, ns), "add one request per write (this one adds 2)")
    assert not {"two-1", "two-2"} & set(pending(cluster, "strategyrollout", fresh, ns))


# ---- each action is its own verb ------------------------------------------------------------------


def test_own_request_with_its_verb_is_accepted(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    _, user = requester
    before = current(cluster, "strategyrollout", fresh, ns)
    accepted(write(requester, {"requests": {"ok-1": request("pause", user, "news")}}, fresh, ns))
    after = current(cluster, "strategyrollout", fresh, ns)
    assert after.pop("requests")["ok-1"]["by"] == user
    assert after == {k: v for k, v in before.items() if k != "requests"}, "nothing but the request changed"


@pytest.mark.parametrize("action", ["abort", "approve", "stopTrading", "promoteFull"])
def test_an_action_without_its_verb_is_refused_naming_the_verb(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str], action: str
) -> None:
    _, user = requester
    r = write(requester, {"requests": {f"no-{action}": request(action, user, "why")}}, fresh, ns)
    refused(
        r,
        f'status.requests: "{user}" lacks the RBAC verb "{action}" on resource strategyrollouts/actions'
        f" (API group strategyrollouts.io) for strategyrollout {ns}/{fresh}",
    )
    assert f"no-{action}" not in pending(cluster, "strategyrollout", fresh, ns)


def test_the_plugin_works_for_a_user_with_the_verb_and_names_the_missing_one(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    writer, user = requester

    def plugin(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(PLUGIN), f"--kubeconfig={writer.kubeconfig}", "-n", ns, *args, "--no-wait"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    done = plugin("pause", fresh, "--reason", "news at 14:00")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["action"] for r in pending(cluster, "strategyrollout", fresh, ns).values() if r["by"] == user] == [
        "pause"
    ]
    done = plugin("approve", fresh, "--reason", "lgtm")
    assert done.returncode != 0
    assert 'lacks the RBAC verb "approve" on resource strategyrollouts/actions' in done.stderr, done.stderr


@pytest.fixture
def stopped(cluster: DevCluster, ns: str, requester: tuple[Writer, str]) -> Iterator[str]:
    """A rollout whose trading was stopped (as the operator records it)."""
    name = f"stopped-{uuid.uuid4().hex[:6]}"
    create(cluster, "StrategyRollout", name, ns, yaml.safe_load(EXAMPLE))
    st = {"phase": "RolledBack", "reason": "TradingStopped", "tradingStopped": True, "message": "trading stopped"}
    accepted(as_admin(cluster, "strategyrollout", name, ns, st))
    yield name
    cluster.kubectl("delete", "strategyrollout", name, "-n", ns, "--wait=false", check=False)


def test_a_retry_after_trading_stopped_needs_lift_stop(
    cluster: DevCluster, ns: str, stopped: str, requester: tuple[Writer, str]
) -> None:
    _, user = requester
    r = write(requester, {"requests": {"retry-1": request("retry", user, "looks fine")}}, stopped, ns)
    refused(r, f'"{user}" lacks the RBAC verb "liftStop"', "trading was stopped: a retry lifts the stop")
    assert "retry-1" not in pending(cluster, "strategyrollout", stopped, ns)
    # With the stop lifted (by the operator), the same user's retry needs only retry again.
    accepted(as_admin(cluster, "strategyrollout", stopped, ns, {"tradingStopped": False, "reason": "GateFailed"}))
    accepted(write(requester, {"requests": {"retry-2": request("retry", user, "after a gate")}}, stopped, ns))


# ---- the shipped ClusterRoles ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_roles(cluster: DevCluster, ns: str) -> Iterator[dict[str, str]]:
    """The chart's strategy-rollouts-operate/-approve/-risk, applied under names of this module's own (a
    chart install elsewhere on this cluster owns the real names), role -> ClusterRole name."""
    rendered = cluster.helm(
        "template", POLICY_RELEASE, str(REPO / "charts" / "strategy-rollouts"),
        "--show-only", "templates/action-roles.yaml",
    ).stdout  # fmt: skip
    roles = {}
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    for doc in docs:
        role = doc["metadata"]["name"].removeprefix("strategy-rollouts-")
        doc["metadata"]["name"] = roles[role] = f"{ns}-{role}"
        # not folded into admin/edit on this shared cluster
        doc["metadata"]["labels"] = {k: v for k, v in doc["metadata"]["labels"].items() if "aggregate" not in k}
    assert sorted(roles) == ["approve", "operate", "risk"]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        yield roles
    finally:
        for name in roles.values():
            cluster.kubectl("delete", "clusterrole", name, "--ignore-not-found", check=False)


def bound_writer(
    cluster: DevCluster, ns: str, name: str, cluster_role: str, tmp: pytest.TempPathFactory
) -> tuple[Writer, str]:
    """A ServiceAccount whose only rights in `ns` come from `cluster_role` (a RoleBinding)."""
    writer, user = service_account_writer(cluster, ns, name, tmp.mktemp(name), verbs=(), parity_verbs=())
    cluster.kubectl("delete", "rolebinding", name, "-n", ns)
    cluster.kubectl(
        "create", "rolebinding", name, "-n", ns, f"--clusterrole={cluster_role}", f"--serviceaccount={ns}:{name}"
    )
    return writer, user


def test_the_shipped_roles_grant_exactly_their_verbs(
    cluster: DevCluster,
    ns: str,
    fresh: str,
    stopped: str,
    shipped_roles: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    operate = bound_writer(cluster, ns, "operate", shipped_roles["operate"], tmp_path_factory)
    approve = bound_writer(cluster, ns, "approve", shipped_roles["approve"], tmp_path_factory)
    risk = bound_writer(cluster, ns, "risk", shipped_roles["risk"], tmp_path_factory)
    cases = [
        (operate, fresh, {"promote": True, "abort": True, "approve": False, "stopTrading": False}),
        (approve, fresh, {"approve": True, "promote": False, "abort": False}),
        (risk, fresh, {"stopTrading": True, "abort": True, "promote": False, "approve": False}),
        (risk, stopped, {"retry": True}),  # liftStop
        (operate, stopped, {"retry": False}),  # retry, but no liftStop
    ]
    for who, name, verdicts in cases:
        for action, allowed in verdicts.items():
            rid = f"{who[1].rsplit(':', 1)[1]}-{action.lower()}-{uuid.uuid4().hex[:4]}"
            r = write(who, {"requests": {rid: request(action, who[1], "role check")}}, name, ns)
            assert (r.returncode == 0) == allowed, f"{who[1]} {action} on {name}: {r.stderr}"
    # Status beyond requests stays the operator's, whatever the role.
    refused(write(risk, {"tradingStopped": False}, stopped, ns), f"status.tradingStopped{OPERATOR_ONLY}")


# ---- the operator ---------------------------------------------------------------------------------


def test_the_operator_rewrites_status_and_handles_requests_but_writes_only_in_its_own_name(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str], admin: str
) -> None:
    _, user = requester
    accepted(write(requester, {"requests": {"sa-2": request("promote", user)}}, fresh, ns))
    # What the operator writes when it handles the request: every field, the request removed.
    handled = {"id": "sa-2", "action": "promote", "by": user, "outcome": "Applied", "at": now()}
    st = {
        "phase": "Progressing",
        "stageIndex": 0,
        "approvals": [],
        "handledRequests": [*SEEDED["handledRequests"], handled],  # type: ignore[list-item]
        "requests": {"sa-2": None},
    }
    accepted(as_admin(cluster, "strategyrollout", fresh, ns, st))
    assert "sa-2" not in pending(cluster, "strategyrollout", fresh, ns)
    # Its own requests (a ParityCheck's stopTrading) carry its own name; no verb is needed.
    accepted(as_admin(cluster, "strategyrollout", fresh, ns, {"requests": {"op-1": request("stopTrading", admin)}}))
    # It cannot write in someone else's name, nor change a request it has not handled.
    r = as_admin(cluster, "strategyrollout", fresh, ns, {"requests": {"op-2": request("abort", user, "as you")}})
    refused(r, f'{BY_MESSAGE} "{admin}" (your user name); refused: op-2 (by "{user}")')
    accepted(write(requester, {"requests": {"sa-3": request("pause", user)}}, fresh, ns))
    r = as_admin(cluster, "strategyrollout", fresh, ns, {"requests": {"sa-3": {"action": "abort"}}})
    refused(r, f'refused: sa-3 (by "{user}")')
    assert pending(cluster, "strategyrollout", fresh, ns)["sa-3"]["action"] == "pause"


def test_the_operator_identity_is_a_parameter(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str]
) -> None:
    """Adding an identity to the policies' ConfigMap makes it the operator, without touching the policies."""
    _, user = requester
    policies = {
        d["metadata"]["name"]: d["metadata"]["resourceVersion"]
        for d in json.loads(cluster.kubectl("get", "validatingadmissionpolicies", "-o", "json").stdout)["items"]
    }
    cluster.set_operator_identity(user)
    try:
        deadline = time.monotonic() + 60
        while (r := write(requester, {"message": "written by a second operator"}, fresh, ns)).returncode != 0:
            assert time.monotonic() < deadline, r.stderr
            time.sleep(0.5)
    finally:
        cluster.set_operator_identity(user, present=False)
    assert current(cluster, "strategyrollout", fresh, ns)["message"] == "written by a second operator"
    in_force(cluster, requester, "strategyrollout", fresh, ns)
    after = {
        d["metadata"]["name"]: d["metadata"]["resourceVersion"]
        for d in json.loads(cluster.kubectl("get", "validatingadmissionpolicies", "-o", "json").stdout)["items"]
    }
    assert {k: after.get(k) for k in policies if k.startswith(POLICY_RELEASE)} == {
        k: v for k, v in policies.items() if k.startswith(POLICY_RELEASE)
    }


def test_two_peoples_requests_written_at_once_both_survive(
    cluster: DevCluster, ns: str, fresh: str, requester: tuple[Writer, str], other: tuple[Writer, str]
) -> None:
    for round_ in range(5):
        mine, theirs = f"race-a-{round_}", f"race-b-{round_}"
        procs = [
            subprocess.Popen(
                who[0].argv(*patch_args("strategyrollout", fresh, ns, {"requests": {rid: request("pause", who[1])}})),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for who, rid in ((requester, mine), (other, theirs))
        ]  # fmt: skip
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        requests = pending(cluster, "strategyrollout", fresh, ns)
        assert requests[mine]["by"] == requester[1] and requests[theirs]["by"] == other[1]


# ---- the other kinds ------------------------------------------------------------------------------


def test_parity_check_requests_need_the_run_verb_and_the_rest_is_the_operators(
    cluster: DevCluster,
    ns: str,
    rollout: str,
    requester: tuple[Writer, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _, user = requester
    create(cluster, "ParityCheck", "fib-rsi-parity", ns, PARITY)
    in_force(cluster, requester, "paritycheck", "fib-rsi-parity", ns)
    r = write(requester, {"requests": {"run-1": request("run", "alice")}}, "fib-rsi-parity", ns, "paritycheck")
    refused(r, 'refused: run-1 (by "alice")')
    accepted(write(requester, {"requests": {"run-2": request("run", user)}}, "fib-rsi-parity", ns, "paritycheck"))
    assert pending(cluster, "paritycheck", "fib-rsi-parity", ns)["run-2"]["by"] == user
    r = write(requester, {"requests": {"run-2": None}}, "fib-rsi-parity", ns, "paritycheck")
    refused(r, f'{DROPPED} run-2 (by "{user}")')
    r = write(requester, {"consecutiveBreaches": 0, "activeActions": []}, "fib-rsi-parity", ns, "paritycheck")
    refused(r, f"{OPERATOR_ONLY} this")
    mute = service_account_writer(
        cluster, ns, "no-run", tmp_path_factory.mktemp("no-run"), verbs=REQUESTER_VERBS, parity_verbs=()
    )
    r = write(mute, {"requests": {"run-3": request("run", mute[1])}}, "fib-rsi-parity", ns, "paritycheck")
    refused(r, f'"{mute[1]}" lacks the RBAC verb "run" on resource paritychecks/actions')


def test_a_shadow_run_status_is_the_operators_alone(
    cluster: DevCluster, ns: str, requester: tuple[Writer, str]
) -> None:
    create(cluster, "ShadowRun", "fib-rsi-shadow", ns, SHADOW)
    accepted(as_admin(cluster, "shadowrun", "fib-rsi-shadow", ns, {"phase": "Running", "message": "shadowing"}))
    in_force(cluster, requester, "shadowrun", "fib-rsi-shadow", ns)
    r = write(requester, {"verdict": "Pass"}, "fib-rsi-shadow", ns, "shadowrun")
    refused(r, "status.verdict: only the operator may change the status of a ShadowRun")
    assert "verdict" not in current(cluster, "shadowrun", "fib-rsi-shadow", ns)


def test_the_policies_type_check_against_the_crds(cluster: DevCluster, crds: None) -> None:
    """Every field the CEL names exists in the kind's schema (the API server type-checks each policy)."""
    names = [f"{POLICY_RELEASE}-status-{p}" for p in ("strategyrollouts", "shadowruns", "paritychecks")]
    for name in names:
        deadline = time.monotonic() + 30
        while True:
            obj = json.loads(cluster.kubectl("get", "validatingadmissionpolicy", name, "-o", "json").stdout)
            checked = obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
            if checked or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert checked, f"{name} was not type-checked"
        assert not (obj["status"].get("typeChecking") or {}).get("expressionWarnings"), obj["status"]
