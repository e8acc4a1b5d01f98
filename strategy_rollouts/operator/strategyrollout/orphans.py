"""Objects a rollout wrote into other namespaces (a stage namespace's routing ConfigMap) go with it.

Owner references cannot cross namespaces, so the garbage collector cannot do this. They carry
owner labels instead (routing_writer.owner_labels): removed on the rollout's DELETED event, and by a
sweep at startup for rollouts deleted while the operator was down.

Only a ConfigMap created for that rollout and no other (routing_writer.owned_by: its owner label and
any StrategyRollout ownerReference name that uid alone) is removed, and the delete carries its uid and
resourceVersion as preconditions: one changed, relabelled or taken over since it was listed stays.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from strategy_rollouts.operator.clients.kube import Conflict, Kube
from strategy_rollouts.operator.clients.routing import OWNER_NAME, OWNER_NAMESPACE, OWNER_UID, owner_uids

log = logging.getLogger(__name__)
GLOB = set("*?[!")


def _watched(namespace: str, patterns: tuple[str, ...]) -> bool:
    """kopf's namespace patterns: globs, `!glob` excludes."""
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    matched = not include or any(fnmatch.fnmatchcase(namespace, p) for p in include)
    return matched and not any(fnmatch.fnmatchcase(namespace, p) for p in exclude)


async def _labelled(kube: Kube, selector: str, namespaces: tuple[str, ...]) -> list[client.V1ConfigMap]:
    """Across every namespace, or (a namespaced operator, whose Roles cannot list across) in each watched one.

    A glob (`-n 'team-*'`, kopf's patterns) names no single namespace: such an operator lists across all
    (its RBAC must allow that anyway to watch a pattern) and keeps what the patterns match."""
    if not namespaces or any(set(ns) & GLOB for ns in namespaces):
        found = await kube.call(kube.core.list_config_map_for_all_namespaces, label_selector=selector)
        items: list[client.V1ConfigMap] = list(found.items)
        return [cm for cm in items if not namespaces or _watched(_meta(cm)[0], namespaces)]
    out: list[client.V1ConfigMap] = []
    for ns in namespaces:
        out.extend((await kube.call(kube.core.list_namespaced_config_map, ns, label_selector=selector)).items)
    return out


def removed_with(cm: Mapping[str, Any], uid: str) -> bool:
    """Does deleting the rollout `uid` remove this ConfigMap? Only if it was created for that rollout and
    no other: its owner label and every StrategyRollout ownerReference name that uid alone."""
    return owner_uids(cm) == {uid}


def orphaned(cm: Mapping[str, Any], owner: Mapping[str, Any] | None) -> bool:
    """Does the sweep remove this ConfigMap? `owner`: the rollout its owner labels name, as read (None:
    absent). Only one created for one rollout alone, when that rollout is gone or is a new object."""
    uid = str(((cm.get("metadata") or {}).get("labels") or {}).get(OWNER_UID) or "")
    if not uid or not removed_with(cm, uid):
        return False  # names another owner too: not ours to judge
    return owner is None or (owner.get("metadata") or {}).get("uid") != uid


async def remove_owned(kube: Kube, uid: str, namespaces: tuple[str, ...] = ()) -> int:
    """Delete every ConfigMap created for the rollout `uid` (and for no other). Returns how many."""
    removed = 0
    for cm in await _labelled(kube, f"{OWNER_UID}={uid}", namespaces):
        if not removed_with(kube.body(cm), uid):
            namespace, name, _ = _meta(cm)
            log.warning(
                "configmap %s/%s is labelled for %s but names another owner too: left in place", namespace, name, uid
            )
            continue
        if await _delete(kube, cm):
            removed += 1
    return removed


async def sweep(kube: Kube, namespaces: tuple[str, ...] = ()) -> int:
    """Delete labelled ConfigMaps whose rollout no longer exists (or is a new object of the same name)."""
    removed = 0
    for cm in await _labelled(kube, OWNER_UID, namespaces):
        body, (_, _, labels) = kube.body(cm), _meta(cm)
        if not removed_with(body, labels.get(OWNER_UID, "")):
            continue  # names another owner too: not ours to judge (and nothing to read)
        owner = await kube.get("strategyrollouts", labels.get(OWNER_NAMESPACE, ""), labels.get(OWNER_NAME, ""))
        if orphaned(body, owner) and await _delete(kube, cm):
            removed += 1
    return removed


def _meta(cm: client.V1ConfigMap) -> tuple[str, str, dict[str, str]]:
    meta = cm.metadata or client.V1ObjectMeta()
    return str(meta.namespace), str(meta.name), dict(meta.labels or {})


async def _delete(kube: Kube, cm: client.V1ConfigMap) -> bool:
    """Delete the ConfigMap as listed (its uid and resourceVersion as preconditions): one rewritten
    since, by a new rollout of the same name, stays (409), and so does one already gone."""
    namespace, name, _ = _meta(cm)
    meta = cm.metadata or client.V1ObjectMeta()
    try:
        deleted = await kube.delete(
            kube.core.delete_namespaced_config_map, namespace, name, meta.resource_version, meta.uid
        )
    except Conflict:
        log.info("routing ConfigMap %s/%s changed since it was listed; left for the next sweep", namespace, name)
        return False
    if deleted:
        log.info("removed routing ConfigMap %s/%s of a deleted rollout", namespace, name)
    return deleted
