"""The shadow's egress NetworkPolicy: a pure manifest builder, and the isolation check of a pod template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategy_rollouts.api.shadowrun import EgressRule


def policy_name(shadowrun: str) -> str:
    return f"{shadowrun}-egress"


def egress_policy(
    shadowrun: Mapping[str, Any], match_labels: Mapping[str, str], allow: Sequence[EgressRule]
) -> dict[str, Any]:
    """NetworkPolicy `<name>-egress`, owned by the ShadowRun: the shadow pods may reach only `allow`.

    An empty `allow` denies every egress (policyTypes [Egress] with no rules).
    """
    meta = shadowrun["metadata"]
    egress: list[dict[str, Any]] = []
    for rule in allow:
        entry: dict[str, Any] = {"to": [{"ipBlock": {"cidr": rule.cidr}}]}
        if rule.ports:
            entry["ports"] = [{"protocol": "TCP", "port": port} for port in rule.ports]
        egress.append(entry)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": policy_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {
                "app.kubernetes.io/managed-by": "strategy-rollouts",
                "strategyrollouts.io/shadowrun": meta["name"],
            },
            "ownerReferences": [
                {
                    "apiVersion": shadowrun["apiVersion"],
                    "kind": shadowrun["kind"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "podSelector": {"matchLabels": dict(match_labels)},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }


def isolation_errors(deployment: str, required: Mapping[str, str], template_env: Mapping[str, str]) -> list[str]:
    """Every isolation env pair the shadow's pod template lacks (or sets to another value)."""
    errors: list[str] = []
    for key, value in sorted(required.items()):
        actual = template_env.get(key)
        if actual != value:
            has = "it is not set" if actual is None else f"it is {actual!r}"
            errors.append(
                f"shadow deployment {deployment}: pod template must set isolation env {key}={value!r} ({has}); "
                "the shadow is never scaled up without it"
            )
    return errors
