"""What ShadowRun passes read from watches instead of a GET per pass: the shadow Deployment's view
(replicas, pod-template env, selector) and the NetworkPolicies.

The Deployment view comes from the Deployment watch the rollouts already use (kept only for shadow
Deployments). NetworkPolicies come from a watch of the namespaces' policies (not label-selected: a
policy under our name put there by hand, without our labels, must still be seen and removed) with a
kopf index on it: kopf processes no other event until every indexed resource has been listed, so once
a ShadowRun loop runs, a policy absent from the cache is absent from the cluster (up to the watch's
lag). A stale view is safe: decisions are written to status first, a replace of a policy is guarded by
the resourceVersion it was read with, a create of one that exists fails with AlreadyExists and a
delete of one that is gone is a no-op; the next pass sees the watch's truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from strategy_rollouts.engine.shadow_run import ShadowDeployment
from strategy_rollouts.operator.runtime.cache import Newest, ObjectKey, key_of, revision_of, slim

POLICY_WAKER = "networkpolicy"  # waker kind: one of our NetworkPolicies was deleted


def view_of(body: Mapping[str, Any]) -> ShadowDeployment:
    """A Deployment's JSON body (watch or GET) -> what a ShadowRun looks at."""
    spec = body.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    env: dict[str, str] = {}
    for container in pod.get("containers") or []:
        for var in container.get("env") or []:
            if var.get("value") is not None:
                env[str(var["name"])] = str(var["value"])
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    replicas = spec.get("replicas")
    return ShadowDeployment(1 if replicas is None else int(replicas), env, dict(labels))


@dataclass
class ShadowCache:
    """One field of Context: Deployment views and our NetworkPolicies, newest resourceVersion wins."""

    views: Newest[ObjectKey, ShadowDeployment] = field(default_factory=Newest)
    wanted: set[ObjectKey] = field(default_factory=set)  # only shadow Deployments are kept (memory)
    policies: Newest[ObjectKey, dict[str, Any]] = field(default_factory=Newest)
    policies_watched: bool = False  # set at startup: the policy watch and its index are registered

    def offer_deployment(self, body: Mapping[str, Any], wanted: bool = False) -> None:
        """From the Deployment watch (kept only if a ShadowRun reads it) or a pass's own GET (`wanted`)."""
        meta = body.get("metadata") or {}
        key = key_of(meta)
        if wanted:
            self.wanted.add(key)
        if key in self.wanted:
            self.views.put(key, revision_of(meta), view_of(body))

    def deployment(self, namespace: str, name: str) -> ShadowDeployment | None:
        return self.views.get((namespace, name))

    def scaled(self, namespace: str, name: str, replicas: int, resource_version: str | None) -> None:
        """Our own scale landed: the view shows it before the watch's echo (and carries its version)."""
        held = self.views.get((namespace, name))
        if held is not None:
            view = dataclasses.replace(held, replicas=replicas)
            self.views.put((namespace, name), revision_of({"resourceVersion": resource_version}), view)

    def deployment_version(self, namespace: str, name: str) -> str | None:
        return self.views.version((namespace, name))

    def drop_deployment(self, namespace: str, name: str) -> None:
        self.views.pop((namespace, name))

    def policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.policies.get((namespace, name))

    def offer_policy(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        self.policies.put(key_of(meta), revision_of(meta), slim(body))

    def drop_policy(self, namespace: str, name: str) -> None:
        self.policies.pop((namespace, name))
