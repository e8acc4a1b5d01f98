"""The kubectl plugin against the real API server: it writes the protocol's requests to the status
subresource, waits for the operator's answer, renders, and exits with the documented codes.

No operator runs here: the tests play its part by patching status (`kubectl --subresource=status`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from strategy_rollouts.api.common import Condition
from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.paritycheck import ParityRun
from strategy_rollouts.api.requests import Outcome, Request
from strategy_rollouts.api.rollout import HistoryEntry, ReplicaStatus, RoutingStatus, StrategyRolloutStatus
from strategy_rollouts.api.shadowrun import DecisionStats, Mismatches, Percentiles, ShadowRunStatus, StageLatency
from strategy_rollouts.engine.requests import handled
from tests.unit.rollout_sim import EXAMPLE

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(sys.executable).parent / "kubectl-strategy"
NOW = datetime.now(UTC)


# ---- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kube(cluster: DevCluster) -> DevCluster:
    """The cluster with this project's CRDs established."""
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    cluster.apply_status_policy()
    return cluster


@pytest.fixture(scope="module")
def admin(kube: DevCluster) -> str:
    """Our user name as SelfSubjectReview reports it."""
    name = kube.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()
    assert name
    return name


@pytest.fixture
def namespace(kube: DevCluster) -> Iterator[str]:
    """A namespace outside the session operator's `t<session>-*` watch: here the tests play the operator."""
    name = f"cli-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module", autouse=True)
def no_operator(kube: DevCluster) -> Iterator[None]:
    """These tests stand in for the operator: make sure no operator handles their namespaces."""
    ns = f"cli-probe-{os.getpid()}"
    kube.kubectl("create", "namespace", ns)
    try:
        create(kube, "StrategyRollout", "probe", ns, yaml.safe_load(EXAMPLE))
        time.sleep(2)
        obj = get(kube, "strategyrollout", "probe", ns)
        assert not (obj.get("status") or obj["metadata"].get("finalizers")), (
            "an operator watching every namespace handles StrategyRollouts on this cluster; stop it "
            "(the test session's own operator watches only its t<session>-* namespaces)"
        )
        yield
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def plugin(cluster: DevCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), *args], capture_output=True, text=True, env=cluster.env(), timeout=timeout, check=False
    )


def start_plugin(cluster: DevCluster, *args: str, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """`sigint_ignored`: started the way a shell without job control starts `cmd &` (a script's
    background job, `make test > log &`): SIGINT ignored, inherited through exec."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if sigint_ignored else None
    try:
        return subprocess.Popen(
            [str(PLUGIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env()
        )
    finally:
        if sigint_ignored:
            signal.signal(signal.SIGINT, previous)


def create(cluster: DevCluster, kind: str, name: str, namespace: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))


def get(cluster: DevCluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout))


def patch_status(cluster: DevCluster, kind: str, name: str, namespace: str, status: dict[str, Any]) -> None:
    patch = json.dumps({"status": status})
    cluster.kubectl("patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)


def eventually(pred: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def srl(kube: DevCluster, namespace: str) -> str:
    create(kube, "StrategyRollout", "fib-rsi", namespace, yaml.safe_load(EXAMPLE))
    return "fib-rsi"


def requests_of(
    cluster: DevCluster, namespace: str, name: str = "fib-rsi", kind: str = "strategyrollout"
) -> dict[str, Any]:
    """status.requests: the pending requests by id."""
    return dict((get(cluster, kind, name, namespace).get("status") or {}).get("requests") or {})


def handle(
    cluster: DevCluster,
    kind: str,
    name: str,
    namespace: str,
    id_: str,
    outcome: Outcome,
    message: str,
    status: dict[str, Any] | None = None,
) -> None:
    """What the operator does in one status write: remove the request, log its outcome."""
    req = Request.model_validate(requests_of(cluster, namespace, name, kind)[id_])
    entry = handled(id_, req, outcome, message, datetime.now(UTC))
    patch = {**(status or {}), "requests": {id_: None}, "handledRequests": [entry.wire()]}
    patch_status(cluster, kind, name, namespace, patch)


def progressing() -> dict[str, Any]:
    return StrategyRolloutStatus(
        phase="Progressing",
        reason="StepPaused",
        stage="prod",
        stage_index=1,
        step_index=2,
        canary_weight=50,
        started_at=NOW,
        stable_version="v1.0.0",
        canary_version="v2.0.0",
        replicas=ReplicaStatus(stable=4, canary=2, stable_ready=4, canary_ready=2),
        routing=RoutingStatus(revision=4, canary_keys=5, draining=0),
        gates=[GateStatus(name="tick-p95-ms", value=123.4, result="Pass", evaluated_at=NOW)],
        history=[HistoryEntry(version="v2.0.0", outcome="Paused", at=NOW, by="alice", reason="lunch")],
    ).wire()


# ---- manual actions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "action", "reason"),
    [
        (["promote", "--reason", "looks good"], "promote", "looks good"),
        (["promote", "--full"], "promoteFull", None),
        (["abort", "--reason", "p95 too high"], "abort", "p95 too high"),
        (["retry"], "retry", None),
        (["pause", "--reason", "FOMC"], "pause", "FOMC"),
        (["resume"], "resume", None),
        (["approve", "--reason", "risk desk ok"], "approve", "risk desk ok"),
    ],
)
def test_request_lands_in_status(
    kube: DevCluster, namespace: str, srl: str, admin: str, args: list[str], action: str, reason: str | None
) -> None:
    before = get(kube, "strategyrollout", srl, namespace)
    r = plugin(kube, args[0], srl, *args[1:], "-n", namespace, "--no-wait")
    assert r.returncode == 0, r.stderr
    ((id_, req),) = requests_of(kube, namespace).items()
    assert req["action"] == action and req["by"] == admin and req.get("reason") == reason
    assert re.fullmatch(r"[0-9a-f]{32}", id_) and id_ in r.stdout
    assert abs((datetime.fromisoformat(req["at"].replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()) < 60
    after = get(kube, "strategyrollout", srl, namespace)
    # Status only: the spec (and so Argo CD's diff) is untouched, spec.paused included.
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]


def test_abort_needs_a_reason(kube: DevCluster, namespace: str, srl: str) -> None:
    r = plugin(kube, "abort", srl, "-n", namespace, "--no-wait")
    assert r.returncode == 2 and "usage:" in r.stderr and "--reason" in r.stderr
    assert requests_of(kube, namespace) == {}


def test_requests_never_replace_each_other(kube: DevCluster, namespace: str, srl: str) -> None:
    assert plugin(kube, "pause", srl, "-n", namespace, "--no-wait", "--reason", "first").returncode == 0
    r = plugin(kube, "resume", srl, "-n", namespace, "--no-wait")
    assert r.returncode == 0, r.stderr
    pending = requests_of(kube, namespace)
    assert sorted(req["action"] for req in pending.values()) == ["pause", "resume"]
    assert next(req for req in pending.values() if req["action"] == "pause")["reason"] == "first"


def test_waits_for_the_operator(kube: DevCluster, namespace: str, srl: str) -> None:
    with start_plugin(kube, "abort", srl, "-n", namespace, "--reason", "manual test", "--timeout", "30s") as proc:
        try:
            pending = eventually(lambda: requests_of(kube, namespace), what="status.requests")
            time.sleep(1)
            assert proc.poll() is None  # still waiting: not handled yet
            ((id_, req),) = pending.items()
            rolled_back = StrategyRolloutStatus(
                phase="RolledBack",
                reason="Aborted",
                message="aborted by admin: manual test",
                history=[HistoryEntry(version="v2.0.0", outcome="Aborted", at=NOW, by=req["by"], reason=req["reason"])],
            ).wire()
            handle(kube, "strategyrollout", srl, namespace, id_, "Applied", "rolled back to v1.0.0", rolled_back)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "abort Applied (rolled back to v1.0.0): RolledBack" in out and "aborted by admin: manual test" in out
    assert requests_of(kube, namespace) == {}
    r = plugin(kube, "status", srl, "-n", namespace)
    requests = r.stdout[r.stdout.index("Requests") :]
    assert "abort" in requests and "Applied" in requests and "rolled back to v1.0.0" in requests


def test_a_rejected_request_exits_1_with_the_operators_message(kube: DevCluster, namespace: str, srl: str) -> None:
    with start_plugin(kube, "promote", srl, "-n", namespace, "--timeout", "30s") as proc:
        try:
            pending = eventually(lambda: requests_of(kube, namespace), what="status.requests")
            (id_,) = pending
            handle(kube, "strategyrollout", srl, namespace, id_, "Rejected", "trading stopped: only retry moves it")
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert err.strip() == (
        f"error: strategyrollout {namespace}/{srl}: promote Rejected: trading stopped: only retry moves it"
    )


def test_not_handled_in_time_exits_3(kube: DevCluster, namespace: str, srl: str) -> None:
    started = time.monotonic()
    r = plugin(kube, "retry", srl, "-n", namespace, "--timeout", "2s")
    assert r.returncode == 3
    assert "did not pick up" in r.stderr and "operator running" in r.stderr and "Traceback" not in r.stderr
    assert 2 <= time.monotonic() - started < 20
    assert [req["action"] for req in requests_of(kube, namespace).values()] == ["retry"]


# ---- errors --------------------------------------------------------------------------------------


def test_not_found(kube: DevCluster, namespace: str) -> None:
    for args in (["status", "nope"], ["promote", "nope", "--no-wait"], ["shadow", "report", "nope"]):
        r = plugin(kube, *args, "-n", namespace)
        kind = "shadowrun" if args[0] == "shadow" else "strategyrollout"
        assert r.returncode == 1 and r.stderr.strip() == f"error: {kind} {namespace}/nope not found", r.stderr


def test_no_cluster(kube: DevCluster, tmp_path: Path) -> None:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    for cl in config["clusters"]:
        cl["cluster"]["server"] = f"https://127.0.0.1:{kube.free_port()}"
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(yaml.safe_dump(config))
    r = plugin(kube, "get", "--kubeconfig", str(unreachable), timeout=60)
    assert r.returncode == 1 and "cannot reach the Kubernetes API" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = plugin(kube, "get", "--kubeconfig", str(tmp_path / "missing"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_context_and_its_namespace(kube: DevCluster, namespace: str, srl: str, tmp_path: Path) -> None:
    """Without -n the context's namespace is used; --context picks a context; a wrong one is one line."""
    config = yaml.safe_load(kube.kubeconfig.read_text())
    ctx = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    bare = {k: v for k, v in ctx["context"].items() if k != "namespace"}
    config["contexts"] += [
        {"name": "trading", "context": {**bare, "namespace": namespace}},
        {"name": "bare", "context": bare},
    ]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    r = plugin(kube, "get", "--kubeconfig", str(path), "--context", "trading")
    assert r.returncode == 0 and "fib-rsi" in r.stdout, r.stderr
    r = plugin(kube, "status", "no-such-rollout", "--kubeconfig", str(path), "--context", "bare")
    assert r.stderr.strip() == "error: strategyrollout default/no-such-rollout not found"
    r = plugin(kube, "status", "no-such-rollout", "--kubeconfig", str(path), "--context", "trading", "-n", "x")
    assert r.stderr.strip() == "error: strategyrollout x/no-such-rollout not found"
    r = plugin(kube, "get", "--kubeconfig", str(path), "--context", "nope")
    assert r.returncode == 1 and r.stderr.strip() == "error: context 'nope' not found in kubeconfig"


# ---- get and status ------------------------------------------------------------------------------


def test_get_columns(kube: DevCluster, namespace: str, srl: str) -> None:
    patch_status(kube, "strategyrollout", srl, namespace, progressing())
    r = plugin(kube, "get", "-n", namespace)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "STRATEGY",
        "PHASE",
        "STAGE",
        "STEP",
        "WEIGHT",
        "CANARY",
        "MARKET",
        "GATES",
        "REASON",
        "REQUESTS",
        "AGE",
    ]
    assert row.split()[:7] == ["fib-rsi", "fib_rsi", "Progressing", "prod", "3/5", "50%", "v2.0.0"]
    assert "tick-p95-ms 123.4 ✓" in row and "StepPaused" in row
    r = plugin(kube, "get", "-A")
    line = next(line for line in r.stdout.splitlines() if line.startswith(namespace))
    assert line.split()[1] == "fib-rsi"


def test_get_watch_piped(kube: DevCluster, namespace: str, srl: str) -> None:
    """Piped `get -w` prints a new table on every change and ends cleanly on Ctrl-C."""
    with start_plugin(kube, "get", "-w", "-n", namespace) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().split()[0] == "NAME"
            assert "Pending" in proc.stdout.readline()
            patch_status(kube, "strategyrollout", srl, namespace, progressing())
            assert proc.stdout.readline().split()[0] == "NAME"
            assert "Progressing" in proc.stdout.readline()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0


def test_get_watch_piped_ctrl_c_when_started_with_sigint_ignored(kube: DevCluster, namespace: str, srl: str) -> None:
    """Python installs no KeyboardInterrupt handler when SIGINT is ignored at start-up: the watch
    installs its own, so Ctrl-C (here while idle, a poll or two with no change) still ends it."""
    with start_plugin(kube, "get", "-w", "-n", namespace, sigint_ignored=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().split()[0] == "NAME"
            assert "Pending" in proc.stdout.readline()
            time.sleep(2.5)  # idle: polls that find nothing new
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == ""


def test_get_watch_ctrl_c_during_the_first_list(kube: DevCluster, namespace: str, tmp_path: Path) -> None:
    """Ctrl-C before the first table: the first list waits on an API server that accepted the
    connection and never answers (the watch must not need a first answer to end cleanly)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        server = f"https://127.0.0.1:{silent.getsockname()[1]}"
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "silent", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                    "users": [{"name": "nobody", "user": {"token": "unused"}}],
                    "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "nobody"}}],
                    "current-context": "silent",
                }
            )
        )
        with start_plugin(kube, "get", "-w", "-n", namespace, "--kubeconfig", str(kubeconfig)) as proc:
            try:
                silent.settimeout(60)
                conn, _ = silent.accept()  # the plugin's first connection: its first list, now waiting
                with conn:
                    proc.send_signal(signal.SIGINT)
                    out, err = proc.communicate(timeout=10)
            finally:
                proc.kill()
    assert proc.returncode == 0, err
    assert out == ""


def test_get_empty_namespace(kube: DevCluster, namespace: str) -> None:
    r = plugin(kube, "get", "-n", namespace)
    assert r.returncode == 0 and f"No strategyrollouts found in namespace {namespace}." in r.stdout


def test_kubectl_finds_the_plugin(kube: DevCluster, namespace: str, srl: str) -> None:
    env = kube.env()
    env["PATH"] = f"{PLUGIN.parent}{os.pathsep}{env['PATH']}"
    kubectl = shutil.which("kubectl", path=env["PATH"])
    assert kubectl
    r = subprocess.run(
        [kubectl, "strategy", "get", srl, "-n", namespace], capture_output=True, text=True, env=env, check=False
    )
    assert r.returncode == 0 and "fib-rsi" in r.stdout and "Pending" in r.stdout, r.stderr


def test_status_view_and_exit_codes(kube: DevCluster, namespace: str, srl: str) -> None:
    patch_status(kube, "strategyrollout", srl, namespace, progressing())
    r = plugin(kube, "status", srl, "-n", namespace)
    assert r.returncode == 2, r.stderr
    for piece in ("Stages", "[50%]", "Gates", "tick-p95-ms", "✓ Pass", "revision 4, canary keys 5/10", "History"):
        assert piece in r.stdout
    degraded = Condition(type="Degraded", status="True", reason="GateFailing", last_transition_time=NOW).wire()
    patch_status(kube, "strategyrollout", srl, namespace, {"phase": "Paused", "conditions": [degraded]})
    assert plugin(kube, "status", srl, "-n", namespace).returncode == 1
    patch_status(kube, "strategyrollout", srl, namespace, {"phase": "RolledBack", "conditions": []})
    assert plugin(kube, "status", srl, "-n", namespace).returncode == 1
    patch_status(kube, "strategyrollout", srl, namespace, {"phase": "Succeeded"})
    r = plugin(kube, "status", srl, "-n", namespace)
    assert r.returncode == 0 and "Succeeded" in r.stdout


def test_status_watch(kube: DevCluster, namespace: str, srl: str) -> None:
    patch_status(kube, "strategyrollout", srl, namespace, progressing())
    started = time.monotonic()
    r = plugin(kube, "status", srl, "-n", namespace, "--watch", "--timeout", "2s")
    assert r.returncode == 2 and "still running" in r.stderr and time.monotonic() - started >= 2
    with start_plugin(kube, "status", srl, "-n", namespace, "--watch", "--timeout", "60s") as proc:
        try:
            time.sleep(1.5)
            assert proc.poll() is None
            patch_status(kube, "strategyrollout", srl, namespace, {"phase": "Succeeded"})
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0 and "Succeeded" in out, err


# ---- ParityCheck ---------------------------------------------------------------------------------

PARITY = {
    "strategy": "fib_rsi",
    "target": {"rollout": "fib-rsi"},
    "live": {"query": 'strategy_return{source="live"}'},
    "backtest": {"query": 'strategy_return{source="backtest"}'},
}


def test_parity_run_and_get(kube: DevCluster, namespace: str, admin: str) -> None:
    create(kube, "ParityCheck", "fib-rsi-parity", namespace, PARITY)
    r = plugin(kube, "parity", "run", "fib-rsi-parity", "-n", namespace, "--no-wait")
    assert r.returncode == 0, r.stderr
    ((first, req),) = requests_of(kube, namespace, "fib-rsi-parity", "paritycheck").items()
    assert req["action"] == "run" and req["by"] == admin and re.fullmatch(r"[0-9a-f]{32}", first)
    assert req["at"].endswith("Z")

    with start_plugin(kube, "parity", "run", "fib-rsi-parity", "-n", namespace, "--timeout", "30s") as proc:
        try:

            def second_request() -> Any:
                pending = requests_of(kube, namespace, "fib-rsi-parity", "paritycheck")
                return next((id_ for id_ in pending if id_ != first), None)

            second = eventually(second_request, what="a second run request")
            run = ParityRun(at=NOW, tracking_error_bps=62.5, level="Critical", samples=24, trigger="manual", by=admin)
            result = {"lastRun": run.wire(), "consecutiveBreaches": 1}
            handle(kube, "paritycheck", "fib-rsi-parity", namespace, second, "Applied", "run at once", result)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "level Critical" in out and "tracking error 62.5 bps" in out
    assert list(requests_of(kube, namespace, "fib-rsi-parity", "paritycheck")) == [first]  # the first still pending

    r = plugin(kube, "parity", "get", "-n", namespace)
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "TARGET", "LEVEL", "TE"] and "REQUESTS" in header
    assert row.split()[:4] == ["fib-rsi-parity", "srl/fib-rsi", "Critical", "62.5"] and "(manual)" in row
    assert "1 pending" in row


# ---- ShadowRun and baseline ----------------------------------------------------------------------

SHADOW = {
    "strategy": "fib_rsi",
    "live": {"deployment": "fib-rsi-legacy", "version": "v1.0.0"},
    "shadow": {"deployment": "fib-rsi-pipeline", "version": "v2.0.0", "replicas": 1},
    "duration": "1h",
    "latencyProfile": {
        "histogram": "strategy_stage_duration_seconds",
        "budgets": {"configMap": "fib-rsi-stage-budgets"},
    },
}


def shadow_status(verdict: str) -> dict[str, Any]:
    return ShadowRunStatus.model_validate(
        {
            "phase": "Completed",
            "verdict": verdict,
            "reasons": [] if verdict == "Pass" else ["price mismatches"],
            "decisions": DecisionStats(compared=800, matched=790, match_rate=0.9875, mismatches=Mismatches(price=10)),
            "latencyProfile": {
                "tick_total": StageLatency(
                    live=Percentiles(p50=80, p95=140, p99=170), shadow=Percentiles(p50=82, p95=138.26, p99=160)
                ),
                "signal": StageLatency(live=Percentiles(p95=20), shadow=Percentiles(p95=21.04)),
            },
            "report": "fib-rsi-v2-shadow-report",
            "startedAt": NOW,
            "completedAt": NOW,
        }
    ).wire()


def budgets(cluster: DevCluster, namespace: str) -> dict[str, str] | None:
    r = cluster.kubectl("get", "configmap", "fib-rsi-stage-budgets", "-n", namespace, "-o", "json", check=False)
    return dict(json.loads(r.stdout).get("data") or {}) if r.returncode == 0 else None


def test_baseline_update(kube: DevCluster, namespace: str) -> None:
    create(kube, "ShadowRun", "fib-rsi-v2-shadow", namespace, SHADOW)
    patch_status(kube, "shadowrun", "fib-rsi-v2-shadow", namespace, shadow_status("Fail"))
    r = plugin(kube, "baseline", "update", "fib-rsi-v2-shadow", "-n", namespace)
    assert r.returncode == 1 and "verdict Fail, not Pass" in r.stderr and "--force" in r.stderr
    assert budgets(kube, namespace) is None

    patch_status(kube, "shadowrun", "fib-rsi-v2-shadow", namespace, shadow_status("Pass"))
    r = plugin(kube, "baseline", "update", "fib-rsi-v2-shadow", "-n", namespace)
    assert r.returncode == 0, r.stderr
    assert budgets(kube, namespace) == {"tick_total": "138.3", "signal": "21"}
    assert "created configmap" in r.stdout and "138.3" in r.stdout

    # An existing ConfigMap: measured stages updated, others kept; before/after shown.
    kube.kubectl(
        "patch", "configmap", "fib-rsi-stage-budgets", "-n", namespace, "--type=merge",
        "-p", json.dumps({"data": {"tick_total": "145", "fill": "9"}}),
    )  # fmt: skip
    patch_status(kube, "shadowrun", "fib-rsi-v2-shadow", namespace, shadow_status("Hold"))
    assert plugin(kube, "baseline", "update", "fib-rsi-v2-shadow", "-n", namespace).returncode == 1
    r = plugin(kube, "baseline", "update", "fib-rsi-v2-shadow", "-n", namespace, "--force")
    assert r.returncode == 0, r.stderr
    assert budgets(kube, namespace) == {"tick_total": "138.3", "signal": "21", "fill": "9"}
    row = next(line for line in r.stdout.splitlines() if line.startswith("tick_total")).split()
    assert row == ["tick_total", "145", "138.3", "-4.6%"]


def test_shadow_get_and_report(kube: DevCluster, namespace: str) -> None:
    create(kube, "ShadowRun", "fib-rsi-v2-shadow", namespace, SHADOW)
    r = plugin(kube, "shadow", "report", "fib-rsi-v2-shadow", "-n", namespace)
    assert r.returncode == 1 and "no report.md" in r.stderr and "Pending" in r.stderr
    patch_status(kube, "shadowrun", "fib-rsi-v2-shadow", namespace, shadow_status("Pass"))
    report = "# Shadow run fib-rsi-v2-shadow\n\nVerdict: **Pass**, match rate 98.75%\n"
    kube.kubectl(
        "create", "configmap", "fib-rsi-v2-shadow-report", "-n", namespace,
        f"--from-literal=report.md={report}", '--from-literal=summary.json={"verdict": "Pass", "compared": 800}',
    )  # fmt: skip
    r = plugin(kube, "shadow", "report", "fib-rsi-v2-shadow", "-n", namespace)
    assert r.returncode == 0 and r.stdout == report, r.stderr
    r = plugin(kube, "shadow", "report", "fib-rsi-v2-shadow", "-n", namespace, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"verdict": "Pass", "compared": 800}

    r = plugin(kube, "shadow", "get", "-n", namespace)
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "PHASE", "VERDICT", "MATCH", "COMPARED", "MISMATCHES"]
    assert row.split()[:6] == ["fib-rsi-v2-shadow", "Completed", "Pass", "98.75%", "800", "price=10"]
