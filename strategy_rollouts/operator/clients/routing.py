"""The routing ConfigMap (`routing.json`): read-modify-write shared by rollouts and parity checks.

Rollouts own strategy/versions/weight/assignments; parity checks own sizeMultiplier/entriesEnabled.
`revision` increases on every change, whoever makes it.

A ConfigMap written for a rollout is created for it (owner labels, and an ownerReference in the
rollout's own namespace) and only ever written for that same rollout: an existing one made for
another rollout, or for none, is refused (`NotOwned`), never relabelled (docs/safety.md "Tenancy").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strategy_rollouts.api.common import GROUP
from strategy_rollouts.operator.clients.kube import Conflict, Kube, parse_json
from strategy_rollouts.operator.runtime.cache import WatchCache

ROUTING_KEY = "routing.json"
LABEL = "strategyrollouts.io/routing"
WAKER_KIND = "routing"  # a routing ConfigMap changed (someone else's edit, or deleted)
# Who wrote a routing ConfigMap: owner references cannot cross namespaces, so a stage namespace's
# ConfigMap is found by these labels and removed when its rollout goes (operator/strategyrollout/orphans.py).
OWNER_UID = "strategyrollouts.io/owner-uid"
OWNER_NAMESPACE = "strategyrollouts.io/owner-namespace"
OWNER_NAME = "strategyrollouts.io/owner-name"


class NotOwned(Exception):
    """An existing ConfigMap not created for the rollout that would write it: left as it is."""


def owner_uids(cm: Mapping[str, Any]) -> set[str]:
    """Every StrategyRollout a ConfigMap says it belongs to: its owner label and its ownerReferences."""
    meta = cm.get("metadata") or {}
    uids = {str(uid) for uid in [(meta.get("labels") or {}).get(OWNER_UID)] if uid}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "StrategyRollout" and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            uids.add(str(ref.get("uid")))
    return uids


def owned_by(cm: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """True when the ConfigMap was created for exactly this incarnation of `owner` (uid), and no other."""
    return owner_uids(cm) == {str(owner["metadata"]["uid"])}


def owner_labels(owner: dict[str, Any] | None) -> dict[str, str]:
    if owner is None:
        return {LABEL: "true"}
    meta = owner["metadata"]
    return {LABEL: "true", OWNER_UID: meta["uid"], OWNER_NAMESPACE: meta["namespace"], OWNER_NAME: meta["name"]}


DEFAULTS: dict[str, Any] = {"sizeMultiplier": 1.0, "entriesEnabled": True, "revision": 0}


@dataclass(frozen=True)
class Routing:
    document: dict[str, Any] | None  # None: no ConfigMap yet
    config_map: dict[str, Any] | None  # the body as the API server serves it

    @property
    def revision(self) -> int:
        return int((self.document or {}).get("revision", 0))

    @property
    def assignments(self) -> dict[str, str]:
        value = (self.document or {}).get("assignments", {})
        return dict(value) if isinstance(value, dict) else {}


def _routing(cm: dict[str, Any]) -> Routing:
    return Routing(parse_json((cm.get("data") or {}).get(ROUTING_KEY)) or {}, cm)


async def read(kube: Kube, namespace: str, name: str, cache: WatchCache | None = None) -> Routing:
    """From the label-selected ConfigMap watch (`cache`); a GET only for one it has not delivered
    (not created yet, or created without our label by someone else)."""
    held = cache.config_map(namespace, name) if cache is not None else None
    if held is not None:
        return _routing(held)
    cm = await kube.config_map_body(namespace, name)
    if cm is None:
        return Routing(None, None)
    if cache is not None:
        cache.offer_config_map(cm)
    return _routing(cm)


async def update(
    kube: Kube,
    namespace: str,
    name: str,
    changes: dict[str, Any],
    owner: dict[str, Any] | None = None,
    attempts: int = 4,
    current: Routing | None = None,
    cache: WatchCache | None = None,
) -> tuple[int, bool]:
    """Merge `changes` into routing.json; write only if something differs. Returns (revision, written).

    `current` is the ConfigMap as the caller just read it (saves a GET); a Conflict drops the cached
    copy and reads it fresh. What we wrote feeds `cache`, so the next pass sees its own write.

    With an `owner`, an existing ConfigMap must have been created for it (`owned_by`), else NotOwned
    and nothing is written: the writer never adopts. Its metadata is never changed here.
    """
    for _ in range(attempts):
        if current is None:
            current = await read(kube, namespace, name, cache)
        if owner is not None and current.config_map is not None and not owned_by(current.config_map, owner):
            if cache is not None:
                cache.drop_config_map(namespace, name)  # the next pass's ownership check reads it fresh
            meta = owner["metadata"]
            raise NotOwned(
                f"configmap {namespace}/{name} was not created for strategyrollout {meta['namespace']}/{meta['name']}:"
                " not written"
            )
        base = {**DEFAULTS, **(current.document or {})}
        merged = {k: v for k, v in {**base, **changes}.items() if v is not None}  # None removes a field
        if current.document is not None and merged == base:
            return current.revision, False
        merged["revision"] = current.revision + 1
        text = json.dumps(merged, sort_keys=True, separators=(",", ":"))
        try:
            if current.config_map is None:
                # Owner references cannot cross namespaces: other stages' ConfigMaps are removed on delete.
                same_ns = owner is not None and owner["metadata"]["namespace"] == namespace
                written = await kube.write_config_map(
                    namespace,
                    name,
                    {ROUTING_KEY: text},
                    labels=owner_labels(owner),
                    owner=owner if same_ns else None,
                )
            else:
                # Keep its metadata (owner, labels, resourceVersion guard); change only routing.json.
                cm = current.config_map
                meta = cm.get("metadata") or {}
                body = {
                    **cm,
                    "data": {**(cm.get("data") or {}), ROUTING_KEY: text},
                    "metadata": {**meta, "labels": {**(meta.get("labels") or {}), LABEL: "true"}},
                }
                written = await kube.replace_config_map(body)
        except Conflict:
            if cache is not None:
                cache.drop_config_map(namespace, name)
            current = None
            continue
        if cache is not None:
            cache.offer_config_map(kube.body(written))
        return int(merged["revision"]), True
    raise Conflict(f"routing ConfigMap {namespace}/{name} kept changing; will retry")
