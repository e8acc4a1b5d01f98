"""The operator's allow-lists for addresses that receive credentials (Helm `security.allowed*`)."""

from __future__ import annotations

from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.engine.allowlist import allowed, spec_errors


def test_an_empty_list_restricts_nothing() -> None:
    assert allowed("https://anything.example/x", [])


def test_scheme_host_and_port_must_match_and_the_path_must_be_below() -> None:
    prefixes = ["https://risk.internal/strategy/", "http://prometheus.monitoring:9090"]
    assert allowed("https://risk.internal/strategy/confirm", prefixes)
    assert allowed("https://risk.internal/strategy", prefixes)
    assert allowed("http://prometheus.monitoring:9090", prefixes)
    assert allowed("http://Prometheus.monitoring:9090/api", prefixes)
    assert not allowed("https://risk.internal.evil.example/strategy/confirm", prefixes), "host is not a prefix match"
    assert not allowed("http://risk.internal/strategy/confirm", prefixes), "scheme"
    assert not allowed("https://risk.internal/strategyX", prefixes), "path segment, not string prefix"
    assert not allowed("http://prometheus.monitoring:9091", prefixes), "port"


def test_errors_name_the_field_and_the_setting() -> None:
    gates = [
        GateSpec.model_validate({"name": "p95", "query": "q", "condition": "< 1"}),
        GateSpec.model_validate({"name": "desk", "webhook": {"url": "https://elsewhere.example/hook"}}),
    ]
    errors = spec_errors("http://evil:9090", gates, "spec.gates", ["http://prom:9090"], ["https://risk.internal/"])
    assert errors == [
        "spec.prometheus.address: http://evil:9090 is outside the operator's security.allowedPrometheus"
        " (http://prom:9090)",
        "spec.gates[1].webhook.url: https://elsewhere.example/hook is outside the operator's"
        " security.allowedWebhooks (https://risk.internal/)",
    ]
    assert spec_errors(None, gates, "spec.gates", ["http://prom:9090"], []) == []
