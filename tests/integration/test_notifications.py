"""Notifications end to end: the real operator sends through Apprise's `json://` target to an HTTP
receiver on loopback that the test runs, on a rollback decided from data the test feeds to the real
Prometheus. Exactly one message per occurrence, also when the operator is killed after the rollback is
recorded and before it was delivered; a receiver that hangs does not slow the rollout down.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.testing.exporter import Exporter
from strategy_rollouts.testing.operator_process import OperatorProcess, free_port
from tests.integration.conftest import wait_for
from tests.integration.gate_world import scraped
from tests.integration.workloads import apply, deployment, status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

GOOD, BAD = 100.0, 412.5


@dataclass
class Receiver:
    """An HTTP endpoint for Apprise's json:// target: answers 200, 500, or hangs, as the test says."""

    mode: str = "accept"  # accept | fail | hang
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    hanging: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


def serve(receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            mode = receiver.mode
            if mode == "hang":
                receiver.hanging += 1
                receiver.release.wait(120)
            code = 200 if mode == "accept" else 500
            if code == 200:
                receiver.accepted.append(json.loads(body))
            else:
                receiver.refused += 1
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    receiver.port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = serve(rec)
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def exporter(cluster: DevCluster, namespace: str) -> Iterator[Exporter]:
    with scraped(cluster, f"notify-{namespace}") as exp:
        yield exp


def secret(namespace: str, urls: str, labelled: bool = True) -> dict[str, Any]:
    labels = {"strategyrollouts.io/credentials": "true"} if labelled else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "desk-alerts", "namespace": namespace, "labels": labels},
        "data": {"urls": base64.b64encode(urls.encode()).decode()},
    }


def rollout(namespace: str, strategy: str, on: list[str], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": "alerting", "namespace": namespace},
        "spec": {
            "strategy": strategy,
            "stable": {"deployment": "legacy", "version": "v1.0.0"},
            "canary": {"deployment": "pipeline", "version": "v2.0.0", "replicas": 1},
            "routing": {"keys": [f"K{i}" for i in range(10)], "handoff": "1s"},
            "stages": [{"name": "prod", "steps": steps}],
            "gates": [
                {
                    "name": "tick-p95-ms",
                    "query": f'notify_gate{{strategy="{strategy}"}}',
                    "condition": "< 200",
                    "interval": "1s",
                    "failureLimit": 0,
                    "inconclusiveLimit": 30,
                }
            ],
            "scaleDownDelay": "2s",
            "notify": [{"to": {"secretRef": {"name": "desk-alerts", "key": "urls"}}, "on": on}],
        },
    }


def start_rollout(
    cluster: DevCluster, namespace: str, exporter: Exporter, receiver: Receiver, on: list[str], steps: list[Any]
) -> str:
    strategy = f"n_{namespace.replace('-', '_')}"
    exporter.gauge("notify_gate", GOOD, strategy=strategy)
    apply(cluster, secret(namespace, f"# the desk's receiver\n{receiver.url()}\n"))
    apply(cluster, deployment("legacy", namespace, 2, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    apply(cluster, rollout(namespace, strategy, on, steps))
    return strategy


def rolled_back_at_a_pause(cluster: DevCluster, namespace: str, exporter: Exporter, strategy: str) -> dict[str, Any]:
    wait_for(
        lambda: status(cluster, "alerting", namespace).get("reason") == "AwaitingPromotion",
        90,
        what="the rollout at 30% waiting for promote",
    )
    exporter.gauge("notify_gate", BAD, strategy=strategy)
    return wait_for(  # type: ignore[no-any-return]
        lambda: (s := status(cluster, "alerting", namespace)).get("phase") == "RolledBack" and s,
        60,
        what="rollback on the failing gate",
    )


def settled(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    """The outbox empty and a delivery recorded."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (
            (n := status(cluster, "alerting", namespace).get("notifications") or {})
            and not n.get("pending")
            and n.get("lastDelivered")
            and n
        ),
        60,
        what="the notification recorded as delivered",
    )


def assert_names_the_failure(message: dict[str, Any], namespace: str) -> None:
    text = f"{message.get('title')}\n{message.get('message')}"
    for piece in (f"StrategyRollout {namespace}/alerting", "RolledBack", "tick-p95-ms", "412.5", "< 200"):
        assert piece in text, (piece, text)
    for piece in ("v1.0.0 -> v2.0.0", "stage prod", "weight 30%"):
        assert piece in text, (piece, text)


STEPS = [{"setWeight": 30}, {"pause": {}}, {"setWeight": 100}]


def test_a_rollback_sends_exactly_one_message_naming_gate_value_and_threshold(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, exporter: Exporter, receiver: Receiver
) -> None:
    strategy = start_rollout(cluster, namespace, exporter, receiver, ["RolledBack"], STEPS)
    rolled_back_at_a_pause(cluster, namespace, exporter, strategy)
    wait_for(lambda: receiver.accepted, 60, what="the message")
    state = settled(cluster, namespace)
    assert state["lastDelivered"]["event"] == "RolledBack" and state["lastDelivered"]["outcome"] == "Delivered"
    time.sleep(4)  # more passes of the rolled-back rollout: nothing is sent again
    assert len(receiver.accepted) == 1, receiver.accepted
    assert_names_the_failure(receiver.accepted[0], namespace)


def test_killed_after_the_rollback_is_recorded_the_restarted_operator_sends_it_once(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, exporter: Exporter, receiver: Receiver
) -> None:
    receiver.mode = "fail"  # the first attempts fail: the rollback is recorded, its message not delivered
    strategy = start_rollout(cluster, namespace, exporter, receiver, ["RolledBack"], STEPS)
    st = rolled_back_at_a_pause(cluster, namespace, exporter, strategy)
    assert list((st.get("notifications") or {}).get("pending") or {}) == ["RolledBack-1-0"], st.get("notifications")
    wait_for(lambda: receiver.refused >= 1, 30, what="a first, refused attempt")
    live_operator.kill()  # SIGKILL: nothing is flushed, nothing is recorded
    receiver.mode = "accept"
    time.sleep(1)
    assert not receiver.accepted
    live_operator.start()
    wait_for(lambda: receiver.accepted, 60, what="the message after the restart")
    settled(cluster, namespace)
    time.sleep(4)
    assert len(receiver.accepted) == 1, receiver.accepted
    assert_names_the_failure(receiver.accepted[0], namespace)


def test_a_hanging_receiver_does_not_delay_the_rollout(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, exporter: Exporter, receiver: Receiver
) -> None:
    receiver.mode = "hang"  # every request waits up to 2 minutes for an answer
    steps = [{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 60}, {"pause": {"duration": "1s"}}]
    started = time.monotonic()
    start_rollout(cluster, namespace, exporter, receiver, ["StepAdvanced", "StageCompleted", "Succeeded"], steps)
    wait_for(
        lambda: status(cluster, "alerting", namespace).get("phase") == "Succeeded",
        60,
        what="the rollout completing while its receiver hangs",
    )
    elapsed = time.monotonic() - started
    assert receiver.hanging >= 1, "the sender reached the receiver"
    assert not receiver.accepted
    # Each of the >= 4 messages would hang for minutes in a reconcile; the rollout took seconds.
    assert elapsed < 45, elapsed
    pending = (status(cluster, "alerting", namespace).get("notifications") or {}).get("pending") or {}
    assert pending, "still trying: the entries stay until delivered or given up after 10 minutes"


def test_a_notify_secret_without_the_credentials_label_is_an_invalid_spec(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, exporter: Exporter, receiver: Receiver
) -> None:
    strategy = f"n_{namespace.replace('-', '_')}"
    apply(cluster, secret(namespace, receiver.url(), labelled=False))
    apply(cluster, deployment("legacy", namespace, 2, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    apply(cluster, rollout(namespace, strategy, ["RolledBack"], STEPS))
    st = wait_for(
        lambda: (s := status(cluster, "alerting", namespace)).get("phase") == "Invalid" and s,
        60,
        what="InvalidSpec",
    )
    assert "spec.notify[0].to.secretRef" in st["message"] and "desk-alerts" in st["message"], st["message"]
    assert "strategyrollouts.io/credentials" in st["message"]
    assert not st.get("targets"), "an invalid rollout does not act"


@pytest.fixture
def own_operator(
    cluster: DevCluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, OperatorProcess]]:
    """A namespace the session operator does not watch, and an operator of its own that gives up on a
    notification after 6 s instead of 10 minutes."""
    ns = f"nf-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    log = tmp_path_factory.mktemp("notify-operator") / "operator.log"
    op = OperatorProcess(
        cluster.kubeconfig, cluster.prometheus_url, log, namespaces=(ns,), extra_args=("--notify-retry-window", "6")
    )
    op.start()
    try:
        yield ns, op
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_a_receiver_failing_for_the_whole_retry_window_gets_a_warning_event_and_the_entry_is_dropped(
    cluster: DevCluster, own_operator: tuple[str, OperatorProcess], receiver: Receiver
) -> None:
    namespace, _ = own_operator
    receiver.mode = "fail"
    apply(cluster, secret(namespace, receiver.url()))
    apply(cluster, deployment("legacy", namespace, 2, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    body = rollout(namespace, "n_failing", ["Paused"], STEPS)
    body["spec"]["gates"] = []  # no data needed: it pauses at the step that waits for promote
    apply(cluster, body)
    failed = wait_for(
        lambda: (
            (n := status(cluster, "alerting", namespace).get("notifications") or {}).get("lastFailed")
            and not n.get("pending")
            and n
        ),
        60,
        what="the notification given up and dropped",
    )
    assert failed["lastFailed"]["event"] == "Paused" and failed["lastFailed"]["outcome"] == "Failed"
    assert receiver.refused >= 3, "retried with backoff inside the window"
    events = json.loads(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=NotificationFailed", "-o", "json"
        ).stdout
    )["items"]
    assert len(events) == 1 and events[0]["type"] == "Warning", events
    assert events[0]["involvedObject"]["name"] == "alerting"
    assert "did not accept it" in events[0]["message"] and receiver.url() not in events[0]["message"]
    refused = receiver.refused
    time.sleep(3)
    assert receiver.refused == refused, "nothing is sent after the entry was dropped"


def test_a_parity_check_level_change_is_sent_once(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, exporter: Exporter, receiver: Receiver
) -> None:
    """The same outbox and sender for another kind: a manual run whose level is Warning (from None)."""
    strategy = f"p_{namespace.replace('-', '_')}"
    # Per-period live - backtest differences with a stdev of 0.005 = 50 bps at periodsPerYear 1: Warning.
    exporter.gauge("notify_return", 0.0, noise=0.005, strategy=strategy, source="live")
    exporter.gauge("notify_return", 0.0, strategy=strategy, source="backtest")
    apply(cluster, secret(namespace, receiver.url()))
    apply(cluster, deployment("pipeline", namespace, 1, "v2.0.0"))
    check = {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "ParityCheck",
        "metadata": {"name": "parity", "namespace": namespace},
        "spec": {
            "strategy": strategy,
            "target": {"deployment": "pipeline"},
            "schedule": "0 0 1 1 *",  # yearly: only the manual run below
            "window": "30s",
            "step": "1s",
            "periodsPerYear": 1,
            "minSamples": 8,
            "live": {"query": 'notify_return{strategy="{{strategy}}",source="live"}'},
            "backtest": {"query": 'notify_return{strategy="{{strategy}}",source="backtest"}'},
            "thresholdsBps": {"warning": 20, "critical": 200, "emergency": 400},
            "notify": [{"to": {"secretRef": {"name": "desk-alerts", "key": "urls"}}, "on": ["LevelChanged"]}],
        },
    }
    apply(cluster, check)
    time.sleep(12)  # enough scrapes in the window for minSamples
    me = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    request = {"requests": {"run-1": {"action": "run", "by": me, "at": at}}}
    cluster.kubectl(
        "patch",
        "paritycheck",
        "parity",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": request}),
    )
    st = wait_for(
        lambda: (s := status(cluster, "parity", namespace, kind="paritycheck")).get("lastRun") and s,
        60,
        what="the manual run",
    )
    assert st["lastRun"]["level"] == "Warning", st["lastRun"]
    wait_for(lambda: receiver.accepted, 60, what="the LevelChanged message")

    def outbox() -> dict[str, Any]:
        state = status(cluster, "parity", namespace, kind="paritycheck").get("notifications") or {}
        return dict(state.get("pending") or {})

    wait_for(lambda: not outbox(), 60, what="the outbox empty")
    time.sleep(3)
    assert len(receiver.accepted) == 1, receiver.accepted
    text = receiver.accepted[0]["message"]
    assert f"ParityCheck {namespace}/parity" in text and "Warning" in text and "tracking error" in text, text
