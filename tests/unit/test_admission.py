"""The admission webhook's decisions that need no cluster (operator/admission.py); the rest, with
kopf's server, the API server and Prometheus, is tests/integration/test_admission_webhook.py."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kubernetes import client

from strategy_rollouts.operator.admission import review
from strategy_rollouts.operator.clients.kube import Kube
from strategy_rollouts.operator.context import Context

SPEC: dict[str, Any] = {
    "strategy": "s",
    "stable": {"deployment": "a", "version": "v1"},
    "canary": {"deployment": "b", "version": "v2"},
    "routing": {"keys": ["BTCUSDT"]},
    "stages": [{"name": "prod", "steps": [{"setWeight": 100}]}],
    "gates": [{"name": "g", "query": 'up{job="{{strategyy}}"}', "condition": "< 1", "interval": "5s"}],
}


def body(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "r", "namespace": "ns", **meta}, "spec": spec}


def run(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    ctx = Context(kube=Kube(client.ApiClient()))  # opens no connection: nothing below reaches a server
    return asyncio.run(review(ctx, "strategyrollouts", "ns", obj, old))


def test_an_unknown_placeholder_is_refused_naming_the_field() -> None:
    with pytest.raises(kopf.AdmissionError) as err:
        run(body(SPEC))  # its query has an unknown placeholder: not sent to Prometheus
    assert "spec.gates[0].query: unknown placeholder {{strategyy}}" in str(err.value)


def test_a_spec_that_does_not_parse_is_refused() -> None:
    with pytest.raises(kopf.AdmissionError) as err:
        run(body({**SPEC, "stages": "prod"}))
    assert "spec" in str(err.value) and "stages" in str(err.value)


def test_updates_that_leave_the_spec_alone_and_deletions_pass() -> None:
    assert run(body(SPEC, labels={"a": "b"}), old=body(SPEC)) == []  # admitted while the webhook was down
    assert run(body(SPEC, deletionTimestamp="2026-12-02T00:00:00Z"), old=body({})) == []


def test_an_address_outside_the_allow_list_is_refused_before_any_query() -> None:
    """A server-side dry run must not make the webhook send a query (or a token) to any address."""
    ctx = Context(kube=Kube(client.ApiClient()))
    ctx.settings.allowed_prometheus = ("http://prometheus.monitoring.svc:9090",)
    spec = {**SPEC, "gates": [{**SPEC["gates"][0], "query": "up"}], "prometheus": {"address": "http://10.0.0.9:80"}}
    with pytest.raises(kopf.AdmissionError) as refused:
        asyncio.run(review(ctx, "strategyrollouts", "ns", body(spec), None))
    assert str(refused.value).startswith("spec.prometheus.address: http://10.0.0.9:80 is outside")
