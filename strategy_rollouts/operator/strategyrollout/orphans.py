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


async def remove_owned(kube: Kube, uid: str, namespaces: tuple[str, ...] = ()) -> int:
    """Delete every ConfigMap created for the rollout `uid` (and for no other). Returns how many."""
    removed = 0
    for cm in await _labelled(kube, f"{OWNER_UID}={uid}", namespaces):
        if owner_uids(kube.body(cm)) != {uid}:
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
        _, _, labels = _meta(cm)
        uid = labels.get(OWNER_UID, "")
        if owner_uids(kube.body(cm)) != {uid}:
            continue  # names another owner too: not ours to judge
        owner = await kube.get("strategyrollouts", labels.get(OWNER_NAMESPACE, ""), labels.get(OWNER_NAME, ""))
        if owner is not None and owner["metadata"].get("uid") == uid:
            continue
        if await _delete(kube, cm):
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
