"""The allow-list of addresses the operator and the dashboard may call (the chart's `security.*`)."""

from __future__ import annotations

import pytest

from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.engine.allowlist import AllowList, allowed, cluster_service, spec_errors
from strategy_rollouts.main import operator_settings, parser

PREFIXES = AllowList(("https://risk.internal/strategy/", "http://prometheus.monitoring:9090"))


def test_an_empty_list_allows_nothing_and_only_unrestricted_allows_anything() -> None:
    assert not allowed("http://prometheus.monitoring.svc:9090", AllowList())
    assert not allowed("https://anything.example/x", AllowList())
    assert allowed("https://anything.example/x", AllowList.UNRESTRICTED)


def test_scheme_host_and_port_must_match_and_the_path_must_be_below() -> None:
    assert allowed("https://risk.internal/strategy/confirm", PREFIXES)
    assert allowed("https://risk.internal/strategy", PREFIXES)
    assert allowed("http://prometheus.monitoring:9090", PREFIXES)
    assert allowed("http://Prometheus.monitoring:9090/api", PREFIXES)
    assert not allowed("https://risk.internal.evil.example/strategy/confirm", PREFIXES), "host is not a prefix match"
    assert not allowed("http://risk.internal/strategy/confirm", PREFIXES), "scheme"
    assert not allowed("https://risk.internal/strategyX", PREFIXES), "path segment, not string prefix"
    assert not allowed("http://prometheus.monitoring:9091", PREFIXES), "port"


@pytest.mark.parametrize(
    "host",
    [
        "prometheus",
        "prometheus-operated.monitoring.svc",
        "prometheus-operated.monitoring.svc.cluster.local",
        "thanos-query.0-metrics.svc",
    ],
)
def test_in_cluster_service_names(host: str) -> None:
    assert cluster_service(host)
    assert allowed(f"http://{host}:9090/x", AllowList(cluster_services=True))
    assert not allowed(f"http://{host}:9090/x", AllowList()), "only with cluster_services"


@pytest.mark.parametrize(
    "host",
    [
        "localhost",  # the pod itself
        "2130706433",  # a resolver reads it as 127.0.0.1
        "0x7f000001",
        "10.0.0.9",
        "169.254.169.254",  # a cloud's metadata service
        "[::1]",
        "prometheus.monitoring",  # could as well be a public name: list it
        "evil.example",
        ".svc",
        "x.svc.evil.example",
        "prometheus.",  # absolute: a top-level domain, not the pod's namespace
        "prometheus.monitoring.svc.",
        "a_b.monitoring.svc",
    ],
)
def test_not_in_cluster_service_names(host: str) -> None:
    assert not allowed(f"http://{host}:9090/x", AllowList(cluster_services=True)), host


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus.monitoring:9090@evil.example/",  # user:password@: another host to most clients
        "http://evil.example\\@prometheus.monitoring.svc/",  # urllib3 and urlsplit disagree on the host
        "http://evil.example\\.prometheus.monitoring.svc/",
        "http://prometheus.monitoring.svc:9090 /",
        "http://prometheus.monitoring.svc:99999/",
        "ftp://prometheus.monitoring.svc/",
        "prometheus.monitoring.svc:9090",
        "http:///x",
    ],
)
def test_malformed_or_ambiguous_urls_are_refused_whatever_the_list(url: str) -> None:
    allow = AllowList(("http://prometheus.monitoring:9090", "http://prometheus.monitoring.svc:9090"), True)
    assert not allowed(url, allow), url


def test_errors_name_the_field_the_setting_and_what_is_allowed() -> None:
    gates = [
        GateSpec.model_validate({"name": "p95", "query": "q", "condition": "< 1"}),
        GateSpec.model_validate({"name": "desk", "webhook": {"url": "https://elsewhere.example/hook"}}),
    ]
    errors = spec_errors(
        "http://evil:9090/",
        gates,
        "spec.gates",
        AllowList(("http://prom:9090",)),
        AllowList(("https://risk.internal/",), cluster_services=True),
    )
    assert errors == [
        "spec.prometheus.address: http://evil:9090/ is outside the operator's security.allowedPrometheus"
        " (http://prom:9090)",
        "spec.gates[1].webhook.url: https://elsewhere.example/hook is outside the operator's"
        " security.allowedWebhooks (https://risk.internal/, in-cluster Service names)",
    ]
    assert spec_errors(None, gates, "spec.gates", AllowList(), AllowList(("https://elsewhere.example/",))) == []


def test_the_operator_restricts_nothing_only_without_any_allow_option() -> None:
    """Local development (`strategy-rollouts run` with no allow option); the chart always passes one."""
    dev = operator_settings(parser().parse_args(["run"]))
    assert not dev.restricted and dev.prometheus_allow.unrestricted and dev.webhook_allow.unrestricted
    args = ["run", "--prometheus-url", "http://p.example:9090", "--allow-cluster-services"]
    one = operator_settings(parser().parse_args(args))
    assert one.restricted
    assert allowed("http://p.example:9090/api/v1/query", one.prometheus_allow), "its own --prometheus-url"
    assert allowed("http://prom.monitoring.svc:9090", one.prometheus_allow)
    assert not allowed("http://p.example:9090/hook", one.webhook_allow), "the Prometheus URL is no webhook target"
    assert not allowed("https://hooks.example/x", one.webhook_allow)
    listed = operator_settings(parser().parse_args(["run", "--allowed-webhook", "https://hooks.example/"]))
    assert allowed("https://hooks.example/x", listed.webhook_allow)
    assert not allowed("http://other.example:9090", listed.prometheus_allow), "a webhook entry restricts Prometheus too"
    assert allowed("http://127.0.0.1:9090", listed.prometheus_allow), "the default --prometheus-url"
