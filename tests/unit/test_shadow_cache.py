"""The ShadowRuns' watch-fed reads: Deployment views kept only for shadow Deployments, newest wins."""

from __future__ import annotations

from typing import Any

from strategy_rollouts.engine.shadow_run import ShadowDeployment
from strategy_rollouts.operator.shadowrun.cache import ShadowCache, view_of


def dep(name: str, rv: str, replicas: int | None = 2, env: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "env": [{"name": k, "value": v} for k, v in (env or {}).items()]
                        + [{"name": "FROM_SECRET", "valueFrom": {}}],
                    }
                ]
            }
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}, "spec": spec}


def test_view_reads_replicas_env_and_selector_like_the_api_model() -> None:
    assert view_of(dep("s", "1", 3, {"MODE": "shadow"})) == ShadowDeployment(3, {"MODE": "shadow"}, {"app": "s"})
    assert view_of(dep("s", "1", None)).replicas == 1  # the API server's default


def test_only_deployments_a_shadow_run_read_are_kept_and_then_follow_the_watch() -> None:
    cache = ShadowCache()
    cache.offer_deployment(dep("other", "5"))
    assert cache.deployment("ns", "other") is None  # no ShadowRun reads it: not held (memory)
    cache.offer_deployment(dep("shadow", "5", 0), wanted=True)  # the pass's own GET
    cache.offer_deployment(dep("shadow", "7", 3))  # the watch
    cache.offer_deployment(dep("shadow", "6", 1))  # a late, older event does not win
    view = cache.deployment("ns", "shadow")
    assert view is not None and view.replicas == 3
    cache.drop_deployment("ns", "shadow")
    assert cache.deployment("ns", "shadow") is None


def test_policies_newest_wins_and_deletion_drops() -> None:
    cache = ShadowCache()
    body = {"metadata": {"namespace": "ns", "name": "r-egress", "resourceVersion": "9"}, "spec": {"egress": []}}
    cache.offer_policy(body)
    cache.offer_policy({**body, "metadata": {**body["metadata"], "resourceVersion": "8"}, "spec": {}})
    assert cache.policy("ns", "r-egress") == body
    cache.drop_policy("ns", "r-egress")
    assert cache.policy("ns", "r-egress") is None


def test_cached_bodies_drop_managed_fields_and_keep_everything_else() -> None:
    from strategy_rollouts.operator.runtime.cache import WatchCache

    watched = WatchCache()
    body = {
        "kind": "StrategyRollout",
        "metadata": {"namespace": "ns", "name": "r", "resourceVersion": "3", "managedFields": [{"manager": "x"}]},
        "status": {"phase": "Paused"},
    }
    watched.offer(body)
    held = watched.body("StrategyRollout", "ns", "r")
    assert held == {
        "kind": "StrategyRollout",
        "metadata": {"namespace": "ns", "name": "r", "resourceVersion": "3"},
        "status": {"phase": "Paused"},
    }
    assert "managedFields" in body["metadata"]  # the caller's body is not changed
