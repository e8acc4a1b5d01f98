"""The routing ConfigMap (`routing.json`): read-modify-write shared by rollouts and parity checks.

Rollouts own strategy/versions/weight/assignments; parity checks own sizeMultiplier/entriesEnabled.
`revision` increases on every change, whoever makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from strategy_rollouts.operator.kube import Conflict, Kube, parse_json

ROUTING_KEY = "routing.json"
LABEL = "strategyrollouts.io/routing"
# Who wrote a routing ConfigMap: owner references cannot cross namespaces, so a stage namespace's
# ConfigMap is found by these labels and removed when its rollout goes (operator/orphans.py).
OWNER_UID = "strategyrollouts.io/owner-uid"
OWNER_NAMESPACE = "strategyrollouts.io/owner-namespace"
OWNER_NAME = "strategyrollouts.io/owner-name"


def owner_labels(owner: dict[str, Any] | None) -> dict[str, str]:
    if owner is None:
        return {LABEL: "true"}
    meta = owner["metadata"]
    return {LABEL: "true", OWNER_UID: meta["uid"], OWNER_NAMESPACE: meta["namespace"], OWNER_NAME: meta["name"]}


DEFAULTS: dict[str, Any] = {"sizeMultiplier": 1.0, "entriesEnabled": True, "revision": 0}


@dataclass(frozen=True)
class Routing:
    document: dict[str, Any] | None  # None: no ConfigMap yet
    config_map: client.V1ConfigMap | None

    @property
    def revision(self) -> int:
        return int((self.document or {}).get("revision", 0))

    @property
    def assignments(self) -> dict[str, str]:
        value = (self.document or {}).get("assignments", {})
        return dict(value) if isinstance(value, dict) else {}


async def read(kube: Kube, namespace: str, name: str) -> Routing:
    cm = await kube.config_map(namespace, name)
    if cm is None:
        return Routing(None, None)
    return Routing(parse_json((cm.data or {}).get(ROUTING_KEY)) or {}, cm)


async def update(
    kube: Kube,
    namespace: str,
    name: str,
    changes: dict[str, Any],
    owner: dict[str, Any] | None = None,
    attempts: int = 4,
    current: Routing | None = None,
) -> tuple[int, bool]:
    """Merge `changes` into routing.json; write only if something differs. Returns (revision, written).

    `current` is the ConfigMap as the caller just read it (saves a GET); a Conflict re-reads it.
    """
    for _ in range(attempts):
        if current is None:
            current = await read(kube, namespace, name)
        base = {**DEFAULTS, **(current.document or {})}
        merged = {**base, **changes}
        if current.document is not None and merged == base:
            return current.revision, False
        merged["revision"] = current.revision + 1
        text = json.dumps(merged, sort_keys=True, separators=(",", ":"))
        try:
            if current.config_map is None:
                # Owner references cannot cross namespaces: other stages' ConfigMaps are removed on delete.
                same_ns = owner is not None and owner["metadata"]["namespace"] == namespace
                await kube.write_config_map(
                    namespace,
                    name,
                    {ROUTING_KEY: text},
                    labels=owner_labels(owner),
                    owner=owner if same_ns else None,
                )
            else:
                # Keep its metadata (owner, labels, resourceVersion guard); change only routing.json.
                cm = current.config_map
                cm.data = {**(cm.data or {}), ROUTING_KEY: text}
                if cm.metadata is not None:
                    cm.metadata.labels = {**(cm.metadata.labels or {}), **owner_labels(owner)}
                await kube.replace_config_map(cm)
        except Conflict:
            current = None
            continue
        return int(merged["revision"]), True
    raise Conflict(f"routing ConfigMap {namespace}/{name} kept changing; will retry")
