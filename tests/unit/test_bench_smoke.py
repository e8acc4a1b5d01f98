"""The benchmark harness's pure parts (no cluster, no timing): statistics, parsing, latency extraction."""

from __future__ import annotations

import json
import math

from bench.analysis import (
    CmEvent,
    RolloutTrace,
    cm_event,
    parse_metrics,
    percentile,
    rollback_latency,
    step_latencies,
    sum_by,
    writes,
)
from bench.proxy import classify


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([], 50) is None


def test_parse_metrics_and_sum_by_verb() -> None:
    text = "\n".join(
        [
            "# HELP apiserver_request_total x",
            'apiserver_request_total{code="200",resource="configmaps",verb="GET"} 3',
            'apiserver_request_total{code="200",resource="configmaps",verb="PUT"} 2',
            'apiserver_request_total{code="409",resource="configmaps",verb="PUT"} 1',
            'other_total{verb="GET"} 9',
        ]
    )
    samples = parse_metrics(text, ["apiserver_request_total"])
    assert sum_by(samples, "verb") == {"GET": 3.0, "PUT": 3.0}
    assert writes(sum_by(samples, "verb", "resource")) == 3.0


def test_classify_names_verbs_like_the_api_server() -> None:
    assert classify("GET", "/api/v1/namespaces/a/configmaps/x", "") == ("get", "configmaps")
    assert classify("GET", "/api/v1/namespaces/a/configmaps", "watch=true") == ("watch", "configmaps")
    assert classify("GET", "/apis/apps/v1/namespaces/a/deployments", "") == ("list", "deployments")
    assert classify("PATCH", "/apis/apps/v1/namespaces/a/deployments/x/scale", "") == ("patch", "deployments/scale")
    assert classify("PUT", "/api/v1/namespaces/a/configmaps/x", "") == ("update", "configmaps")
    assert classify("GET", "/apis/strategyrollouts.io/v1alpha1/strategyrollouts", "") == ("list", "strategyrollouts")


def _cm(t: float, revision: int, weight: int, canary: int, draining: int, keys: int = 10) -> CmEvent:
    return CmEvent(t, revision, weight, canary, keys - canary - draining, draining, keys)


def test_step_latency_from_pause_due_time_to_revision_with_next_weight() -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 50}]
    trace = RolloutTrace(steps=steps)
    trace.statuses = [
        (0.0, {"stageIndex": 0, "stepIndex": 0}),
        (1.0, {"stageIndex": 0, "stepIndex": 1, "stepStartedAt": "1970-01-01T00:01:40.000Z"}),  # t=100
    ]
    trace.routing = [_cm(99.0, 2, 10, 1, 0), _cm(102.25, 3, 50, 1, 4), _cm(102.5, 4, 50, 5, 0)]
    (sample,) = step_latencies(trace, keys=10)
    assert sample["weight"] == 50
    assert math.isclose(sample["latency"], 0.25)
    assert math.isclose(sample["assigned"], 0.5)


def test_rollback_latency_splits_detection_from_action() -> None:
    trace = RolloutTrace(steps=[])
    trace.statuses = [
        (10.6, {"phase": "RolledBack", "gates": [{"result": "Fail", "evaluatedAt": "1970-01-01T00:00:10.500Z"}]})
    ]
    trace.routing = [_cm(5.0, 2, 50, 5, 0), _cm(10.7, 3, 50, 0, 5), _cm(10.8, 4, 0, 0, 0)]
    got = rollback_latency(trace, sample_ts=8.0, keys=10)
    assert got is not None
    assert math.isclose(got["to_stable"], 2.8)
    assert math.isclose(got["to_drain"], 2.7)
    assert math.isclose(got["to_failing_evaluation"], 2.5)


def test_cm_event_counts_owners() -> None:
    doc = {"revision": 7, "weight": 50, "assignments": {"A": "v2", "B": "draining", "C": "v1"}}
    ev = cm_event(1.0, {"data": {"routing.json": json.dumps(doc)}}, "v1", "v2")
    assert ev is not None and (ev.revision, ev.canary, ev.draining, ev.stable) == (7, 1, 1, 1)
