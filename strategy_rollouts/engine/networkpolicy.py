"""The shadow's egress NetworkPolicy, pure: the manifest, its shape for comparison, the pod template isolation check."""

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


def policy_shape(spec: Mapping[str, Any]) -> Any:
    """The parts of a NetworkPolicy spec we set, normalized (server defaults such as protocol ignored),
    so an unchanged policy is never rewritten. Accepts camelCase (manifests) and snake_case (client)."""
    egress = []
    for rule in spec.get("egress") or []:
        cidrs = sorted(
            (peer.get("ipBlock") or peer.get("ip_block") or {}).get("cidr", "") for peer in rule.get("to") or []
        )
        ports = sorted(int(p.get("port")) for p in rule.get("ports") or [])
        egress.append((cidrs, ports))
    selector = spec.get("podSelector") or spec.get("pod_selector") or {}
    labels = selector.get("matchLabels") or selector.get("match_labels") or {}
    return dict(labels), sorted(egress), sorted(spec.get("policyTypes") or spec.get("policy_types") or [])
