"""Webhook gates against a real HTTP server on loopback that the test controls: accept, reject (hold and
fail), hang (timeout) and garbage; the token comes from a labelled Secret, an unlabelled one is InvalidSpec."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.gate_world import gate, rollout, start, wait_phase, wait_routed
from tests.integration.workloads import apply, replicas, routing, self_signed, status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

TOKEN = "desk-token-1234"


@dataclass
class Desk:
    """What the fake risk desk answers (`mode`), and every request it got."""

    mode: str = "accept"  # accept | reject | hang | garbage
    requests: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self) -> list[tuple[dict[str, Any], str | None]]:
        with self.lock:
            return list(self.requests)


def handler_for(desk: Desk) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with desk.lock:
                desk.requests.append((body, self.headers.get("Authorization")))
            if desk.mode == "hang":
                time.sleep(5)
                return
            if desk.mode == "garbage":
                self.wfile.write(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
                return
            code, text = (200, b"ok") if desk.mode == "accept" else (409, b"risk desk says no: exposure " + b"x" * 600)
            self.send_response(code)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def desk(live_operator: OperatorProcess) -> Iterator[tuple[Desk, str]]:
    d = Desk()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(d))
    server.daemon_threads = False  # server_close joins the handlers (a hanging one closes its socket first)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield d, f"http://127.0.0.1:{server.server_address[1]}/confirm"
    finally:
        server.shutdown()
        server.server_close()


def secret(name: str, namespace: str, labelled: bool = True) -> dict[str, Any]:
    labels = {"strategyrollouts.io/credentials": "true"} if labelled else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
    }


def hook(url: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": "risk-desk",
        "interval": "1s",
        "inconclusiveLimit": 1,
        "webhook": {"url": url, "timeout": "1s", "bearerTokenSecretRef": {"name": "desk", "key": "token"}, **kw},
    }


def test_accept_step_increase_asks_before_each_weight_increase_with_the_token(
    cluster: DevCluster, namespace: str, desk: tuple[Desk, str], live_operator: OperatorProcess
) -> None:
    d, url = desk
    apply(cluster, secret("desk", namespace))
    start(cluster, rollout("hook-ok", namespace, [hook(url, at="stepIncrease")]))
    wait_phase(cluster, "hook-ok", namespace, "Succeeded")
    seen = d.seen()
    assert seen and all(auth == f"Bearer {TOKEN}" for _, auth in seen)
    body = seen[0][0]
    assert (body["kind"], body["namespace"], body["name"]) == ("StrategyRollout", namespace, "hook-ok")
    assert body["strategy"] == "hook_ok" and body["stable"] == {"version": "v1.0.0"}
    assert body["canary"] == {"version": "v2.0.0"} and isinstance(body["gates"], list)
    # asked only while standing before an increase: 0 -> 20, 20 -> 50, 50 -> 100
    assert {(b["stage"], b["step"], b["weight"]) for b, _ in seen} == {
        ("staging", 0, 0),
        ("prod", 0, 20),
        ("prod", 2, 50),
    }
    # the token went to the desk and nowhere else: not in status, Events or the operator's log
    shown = [
        cluster.kubectl("get", "strategyrollout", "hook-ok", "-n", namespace, "-o", "json").stdout,
        cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
        live_operator.log(),
    ]
    assert not [i for i, text in enumerate(shown) if TOKEN in text]


def test_reject_with_hold_waits_then_continues_when_the_desk_accepts(
    cluster: DevCluster, namespace: str, desk: tuple[Desk, str]
) -> None:
    d, url = desk
    d.mode = "reject"
    apply(cluster, secret("desk", namespace))
    start(cluster, rollout("hook-hold", namespace, [hook(url, at="promotion", onReject="hold")]))

    def held() -> dict[str, Any] | None:
        # WaitingForWebhook is recorded before the call (intent, then act); held = its answer recorded too
        st = status(cluster, "hook-hold", namespace)
        answered = any(g["name"] == "risk-desk" for g in st.get("gates") or [])
        return st if st.get("reason") == "WaitingForWebhook" and answered else None

    st = wait_for(held, 90, what="the webhook's refusal recorded, the rollout waiting for it")
    assert st["phase"] == "Progressing" and st["stage"] == "staging"
    g = gate(st, "risk-desk")
    assert (g["result"], g["value"], g["failures"]) == ("Rejected", 409, 0)
    assert "HTTP 409" in g["message"] and "risk desk says no" not in g["message"]  # never the remote's body
    time.sleep(3)
    assert status(cluster, "hook-hold", namespace)["stage"] == "staging"  # still held, never failed
    d.mode = "accept"
    wait_phase(cluster, "hook-hold", namespace, "Succeeded")


def test_reject_with_fail_rolls_back(cluster: DevCluster, namespace: str, desk: tuple[Desk, str]) -> None:
    d, url = desk
    apply(cluster, secret("desk", namespace))
    start(cluster, rollout("hook-fail", namespace, [hook(url, onReject="fail")], pause="30s"))
    wait_for(lambda: (status(cluster, "hook-fail", namespace).get("canaryWeight") or 0) > 0, 60, what="weight 20")
    d.mode = "reject"
    st = wait_phase(cluster, "hook-fail", namespace, "RolledBack")
    assert st["reason"] == "GateFailed" and "risk-desk" in st["message"] and "HTTP 409" in st["message"]
    wait_routed(cluster, "hook-fail", namespace, {"v1.0.0", "draining"})


@pytest.mark.parametrize(("mode", "why"), [("hang", "timed out after 1s"), ("garbage", "webhook http")])
def test_no_usable_answer_is_inconclusive_and_holds(
    cluster: DevCluster, namespace: str, desk: tuple[Desk, str], mode: str, why: str
) -> None:
    d, url = desk
    d.mode = mode
    apply(cluster, secret("desk", namespace))
    start(cluster, rollout("hook-quiet", namespace, [hook(url, at="stepIncrease")]))
    st = wait_phase(cluster, "hook-quiet", namespace, "Paused")
    assert st["reason"] == "Inconclusive"
    g = gate(st, "risk-desk")
    assert g["result"] == "Inconclusive" and why in g["message"]
    assert st.get("canaryWeight", 0) == 0  # nothing advanced on no answer
    assert replicas(cluster, "hook-quiet-pipeline", namespace)[0] == 0


def test_token_secret_without_the_credentials_label_is_invalid_spec(
    cluster: DevCluster, namespace: str, desk: tuple[Desk, str]
) -> None:
    d, url = desk
    apply(cluster, secret("desk", namespace, labelled=False))
    start(cluster, rollout("hook-bad", namespace, [hook(url)]))
    st = wait_phase(cluster, "hook-bad", namespace, "Invalid")
    assert "spec.gates[0].webhook.bearerTokenSecretRef" in st["message"]
    assert "strategyrollouts.io/credentials" in st["message"] and TOKEN not in json.dumps(st)
    assert d.seen() == []  # never called
    assert routing(cluster, "hook-bad-routing", namespace) is None


@pytest.fixture
def tls_desk(live_operator: OperatorProcess, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The desk over HTTPS with a self-signed certificate for 127.0.0.1: (url, certificate PEM)."""
    cert, key = self_signed(tmp_path, "desk", cn="desk")
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(Desk()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/confirm", cert.read_text()
    finally:
        server.shutdown()
        server.server_close()


def test_tls_is_verified_and_a_ca_from_a_labelled_secret_is_trusted(
    cluster: DevCluster, namespace: str, tls_desk: tuple[str, str]
) -> None:
    url, pem = tls_desk
    ca = secret("desk", namespace)
    ca["data"]["ca.crt"] = base64.b64encode(pem.encode()).decode()
    apply(cluster, ca)
    start(cluster, rollout("tls-unknown", namespace, [hook(url, at="stepIncrease")]))
    st = wait_phase(cluster, "tls-unknown", namespace, "Paused")
    assert st["reason"] == "Inconclusive" and "TLS error" in gate(st, "risk-desk")["message"]
    trusted = hook(url, at="stepIncrease", caSecretRef={"name": "desk", "key": "ca.crt"})
    start(cluster, rollout("tls-trusted", namespace, [trusted]))
    wait_phase(cluster, "tls-trusted", namespace, "Succeeded")
