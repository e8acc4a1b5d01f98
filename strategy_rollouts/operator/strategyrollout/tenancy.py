"""Tenancy: a rollout acts only in namespaces that allow it, and only on objects it alone holds.

API.md "Who may do what" (Tenancy), docs/safety.md "Tenancy". Checked on every pass before anything
acts (pipeline: never relaxed) and, read-only, by the admission webhook at apply.

- Namespaces: a stage may name another namespace only if that Namespace's annotation
  `strategyrollouts.io/allow-rollouts-from` lists the rollout's namespace (a namespace allows itself).
- Deployments: the first rollout to act on one records its claim on it, the annotation
  `strategyrollouts.io/claimed-by: <namespace>/<name>/<uid>`, written with the Deployment's
  resourceVersion as precondition (two claimants: the API server lets one write win, the other reads
  the winner's claim). Recorded before the pass scales or routes anything.
- Routing ConfigMaps: created for the rollout (owner labels, ownerReference in its own namespace) by
  the routing writer, which never writes one made for another rollout or for none.
- A claim whose holder is gone (no rollout of that name, or one with another uid) or no longer names
  the object (spec and status) may be taken over, by the same kind of conditional write. Everything
  else held by another is `<field>: deployment ns/x is claimed by strategyrollout ns/y`.
- A routing ConfigMap made beforehand (the apps read it before any rollout exists) is handed to a
  rollout by a person: owner-namespace/owner-name labels naming it, no uid. That rollout alone takes
  it over (writes its uid); one with no owner labels at all is never taken.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients.kube import Conflict, owner_reference
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.runtime import objects
from strategy_rollouts.operator.runtime.cache import CLAIMED_BY
from strategy_rollouts.operator.strategyrollout.observe import KIND

log = logging.getLogger(__name__)
ALLOW_FROM = "strategyrollouts.io/allow-rollouts-from"
# The "uid" of a routing ConfigMap a person made beforehand for a rollout (owner-namespace/owner-name
# labels, no owner-uid): only the rollout of that name takes it over (docs/safety.md "Tenancy").
PREPARED = ""
ObjectRef = tuple[str, str]  # (namespace, name)
Holder = tuple[str, str, str]  # (namespace, name, uid) of a StrategyRollout holding an object


@dataclass(frozen=True)
class Me:
    """The rollout asking. `uid` is None at admission: then a claim naming its namespace/name is its own."""

    namespace: str
    name: str
    uid: str | None
    body: Mapping[str, Any] | None = None  # the object (for owner labels and references when it writes)

    @property
    def claim(self) -> str:
        return f"{self.namespace}/{self.name}/{self.uid}"

    def holds(self, namespace: str, name: str, uid: str) -> bool:
        """Is a claim by (namespace, name, uid) this rollout's own?"""
        return (namespace, name) == (self.namespace, self.name) and (self.uid is None or uid == self.uid)

    def earlier(self, namespace: str, name: str, uid: str) -> bool:
        """A claim by an earlier object of this rollout's name: that one is gone (names are unique)."""
        return (namespace, name) == (self.namespace, self.name) and self.uid is not None and uid != self.uid


@dataclass
class Scope:
    """Where a rollout acts and on what, each with the field that puts it there (first one wins)."""

    namespaces: dict[str, str] = field(default_factory=dict)  # namespace -> field
    deployments: dict[ObjectRef, str] = field(default_factory=dict)
    config_maps: dict[ObjectRef, str] = field(default_factory=dict)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def scope(body: Mapping[str, Any]) -> Scope:
    """What a rollout body acts on: its stage namespaces and its status targets (a run goes on in the
    namespaces it started in), the spec's two Deployments in each, and the routing ConfigMaps.

    Read leniently from the raw body: it also judges other rollouts (claimants), whatever their state."""
    meta = _dict(body.get("metadata"))
    own, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    spec, status = _dict(body.get("spec")), _dict(body.get("status"))
    out = Scope()
    stage_namespaces: list[str] = []
    for i, stage in enumerate(_list(spec.get("stages"))):
        ns = _str(_dict(stage).get("namespace")) or own
        out.namespaces.setdefault(ns, f"spec.stages[{i}].namespace")
        if ns not in stage_namespaces:
            stage_namespaces.append(ns)
    targets = [_dict(t) for t in _list(status.get("targets"))]
    for j, t in enumerate(targets):
        target_ns = _str(t.get("namespace"))
        if target_ns is not None:
            out.namespaces.setdefault(target_ns, f"status.targets[{j}].namespace")
    for role in ("stable", "canary"):
        dep = _str(_dict(spec.get(role)).get("deployment"))
        if dep is not None:
            for ns in out.namespaces:
                out.deployments.setdefault((ns, dep), f"spec.{role}.deployment")
    config_map = _str(_dict(spec.get("routing")).get("configMap")) or f"{name}-routing"
    for ns in stage_namespaces:
        out.config_maps.setdefault((ns, config_map), "spec.routing.configMap")
    for j, t in enumerate(targets):
        target_ns, cm = _str(t.get("namespace")), _str(t.get("configMap"))
        if target_ns is not None and cm is not None:
            out.config_maps.setdefault((target_ns, cm), f"status.targets[{j}].configMap")
    return out


def allowed_sources(annotations: Mapping[str, str]) -> set[str]:
    """The namespaces a Namespace's annotation lets in ("ns-a, ns-b"; no wildcards)."""
    return {part.strip() for part in str(annotations.get(ALLOW_FROM) or "").split(",") if part.strip()}


def namespace_verdict(target: str, source: str, annotations: Mapping[str, str] | None) -> str | None:
    """None when rollouts of `source` may act in `target`, else why not (`annotations`: the target
    Namespace's as read, None when it does not exist)."""
    if target == source:
        return None
    if annotations is None:
        return f"namespace {target} does not exist (annotation {ALLOW_FROM} must list {source})"
    if source in allowed_sources(annotations):
        return None
    return f"namespace {target} does not allow rollouts from {source} (annotation {ALLOW_FROM})"


async def namespace_problem(ctx: Context, target: str, source: str) -> str | None:
    """namespace_verdict on the Namespace as the API server has it now."""
    if target == source:
        return None
    try:
        annotations = await ctx.kube.namespace_annotations(target)
    except ApiException as exc:  # RBAC or a transient error: not allowed until it can be read
        why = f"{exc.status} {exc.reason}"
        return f"namespace {target} cannot be read ({why}), so it does not allow rollouts from {source}"
    return namespace_verdict(target, source, annotations)


def still_names(holder: Mapping[str, Any] | None, uid: str, what: str, ref: ObjectRef) -> bool:
    """Is `holder` (the StrategyRollout a claim names, as read; None: absent) the object with that uid,
    and does its spec or status still name `ref` (a `what`: "deployment" or "configmap")?"""
    if holder is None or str(_dict(holder.get("metadata")).get("uid")) != uid:
        return False  # deleted, or deleted and made again (another object)
    s = scope(holder)
    return ref in (s.deployments if what == "deployment" else s.config_maps)


async def _holds(ctx: Context, holder: Holder, what: str, ref: ObjectRef) -> bool:
    """Does the holder exist, still act on `ref` and may it? Unsure: yes."""
    namespace, name, uid = holder
    if not namespace or not name or uid == PREPARED:
        # A uid alone (owner labels cut short by hand) cannot be looked up; a ConfigMap prepared for a
        # rollout by name is that rollout's, whenever it comes: either way the claim stands.
        return True
    try:
        body = await objects.read(ctx, "strategyrollouts", namespace, name)
    except ApiException:
        return True  # cannot prove it gone: the claim stands
    if not still_names(body, uid, what, ref):
        return False
    # A rollout the namespace does not let in holds nothing there (e.g. it wrote its labels before tenancy).
    return await namespace_problem(ctx, ref[0], namespace) is None


def _wait_for(ctx: Context, me: Me, namespace: str, name: str) -> None:
    """Wake `me` when the holder changes or is deleted (handlers.py): it may then take the object."""
    if me.uid is not None:
        ctx.wakers.watch(KIND, (me.namespace, me.name), KIND, [(namespace, name)])


def parse_claim(value: str) -> Holder | None:
    parts = value.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


@dataclass
class Found:
    """One object's check: a problem, or what to write to record the claim (nothing: already held)."""

    problem: str | None = None
    claim: dict[str, Any] | None = None  # the object as read, to be claimed with its resourceVersion
    # Other rollouts that hold it while they exist and still name it (_holds): the claim waits for them.
    holders: list[Holder] = field(default_factory=list)


def claimed(field_path: str, what: str, ref: ObjectRef, holder: Holder) -> str:
    """The InvalidSpec message for an object another rollout holds: names that rollout."""
    ns, name, uid = holder
    who = f"{ns}/{name}" if ns and name else f"with uid {uid}"
    return f"{field_path}: {what} {ref[0]}/{ref[1]} is claimed by strategyrollout {who}"


def judge_deployment(me: Me, field_path: str, body: Mapping[str, Any]) -> Found:
    """The Deployment's claim annotation, as read: ours (nothing to write), free or an earlier `me`'s
    (claim it), not a claim (the problem), or another's (claim it only once that one no longer holds it)."""
    meta = _dict(body.get("metadata"))
    ns, dep = str(meta.get("namespace")), str(meta.get("name"))
    value = _str(_dict(meta.get("annotations")).get(CLAIMED_BY))
    if value is None:
        return Found(claim=dict(body))
    holder = parse_claim(value)
    if holder is None:
        return Found(
            f"{field_path}: deployment {ns}/{dep} has annotation {CLAIMED_BY}={value!r}, which names no"
            " strategyrollout (<namespace>/<name>/<uid>); remove it to let this rollout claim it"
        )
    if me.holds(*holder):
        return Found()
    return Found(claim=dict(body), holders=[] if me.earlier(*holder) else [holder])


async def _settle(ctx: Context, me: Me, what: str, field_path: str, ref: ObjectRef, found: Found) -> Found:
    """A holder that still holds the object makes it a problem naming it (and `me` waits for it to change)."""
    for holder in found.holders:
        if await _holds(ctx, holder, what, ref):
            _wait_for(ctx, me, holder[0], holder[1])
            return Found(claimed(field_path, what, ref, holder))
    return Found(found.problem, found.claim)


async def deployment_check(ctx: Context, me: Me, field_path: str, ref: ObjectRef) -> Found:
    """The Deployment's claim: ours, free (or held by someone gone) to take, or another's."""
    ns, dep = ref
    if me.uid is not None and ctx.watched.claim(ns, dep) == me.claim:
        return Found()  # the watch (or our own write) delivered our claim: no I/O
    body = await ctx.kube.deployment_body(ns, dep)
    if body is None:
        return Found()  # nothing to act on (readiness reports it); claimed once it exists
    ctx.watched.offer_claim(body)
    return await _settle(ctx, me, "deployment", field_path, ref, judge_deployment(me, field_path, body))


async def claim_deployment(ctx: Context, me: Me, body: Mapping[str, Any]) -> None:
    """Record the claim, only if the Deployment is unchanged since it was judged free (else Conflict:
    the pass starts over and judges it again)."""
    meta = _dict(body.get("metadata"))
    ns, dep, before = str(meta["namespace"]), str(meta["name"]), _dict(meta.get("annotations")).get(CLAIMED_BY)
    written = await ctx.kube.annotate_deployment(ns, dep, {CLAIMED_BY: me.claim}, str(meta["resourceVersion"]))
    ctx.watched.offer_claim(written)
    log.info(
        "strategyrollout %s/%s claimed deployment %s/%s (claim before: %s)", me.namespace, me.name, ns, dep, before
    )


def config_map_owners(cm: Mapping[str, Any]) -> list[Holder]:
    """(namespace, name, uid) of every StrategyRollout the ConfigMap says it belongs to: its owner labels
    (uid PREPARED: handed to a rollout by name) and its StrategyRollout ownerReferences."""
    meta = _dict(cm.get("metadata"))
    labels = _dict(meta.get("labels"))
    out: list[Holder] = []
    uid = _str(labels.get(routing_writer.OWNER_UID))
    owner_ns, owner_name = labels.get(routing_writer.OWNER_NAMESPACE), labels.get(routing_writer.OWNER_NAME)
    if uid is not None:
        out.append((str(owner_ns or ""), str(owner_name or ""), uid))
    elif _str(owner_name) is not None:  # made beforehand by a person for the rollout of that name (PREPARED)
        out.append((str(owner_ns or meta.get("namespace") or ""), str(owner_name), PREPARED))
    for item in _list(meta.get("ownerReferences")):
        r = _dict(item)
        if r.get("kind") == "StrategyRollout" and str(r.get("uid")) not in {o[2] for o in out}:
            out.append((str(meta.get("namespace") or ""), str(r.get("name") or ""), str(r.get("uid"))))
    return out


def judge_config_map(me: Me, field_path: str, cm: Mapping[str, Any]) -> Found:
    """The routing ConfigMap, as read: created for `me` (nothing to write), for nobody (never adopted:
    the problem), or for others (taken over only once every one of them, earlier `me`s aside, is gone)."""
    meta = _dict(cm.get("metadata"))
    ns, name = str(meta.get("namespace")), str(meta.get("name"))
    owners = config_map_owners(cm)
    if not owners:
        return Found(
            f"{field_path}: configmap {ns}/{name} exists and was not created by the operator for a strategyrollout"
            " (no owner label or ownerReference); it is never adopted: delete it, name another ConfigMap, or hand"
            f" it over with the labels {routing_writer.OWNER_NAMESPACE}/{routing_writer.OWNER_NAME} naming this rollout"
        )
    others = [o for o in owners if not me.holds(*o)]
    if not others:
        return Found()
    return Found(claim=dict(cm), holders=[o for o in others if not me.earlier(*o)])


async def config_map_check(ctx: Context, me: Me, field_path: str, ref: ObjectRef) -> Found:
    """The routing ConfigMap: absent (the writer creates it for `me`), created for `me`, held by a gone
    rollout (to take over), or another's / nobody's (never adopted)."""
    ns, name = ref
    cm = (await routing_writer.read(ctx.kube, ns, name, ctx.watched)).config_map
    if cm is None:
        return Found()
    found = judge_config_map(me, field_path, cm)
    if me.uid is not None and (found.problem is not None or found.claim is not None):
        # Woken when it changes or goes (the watch of our routing label): it may be ours to use then.
        ctx.wakers.watch(KIND, (me.namespace, me.name), routing_writer.WAKER_KIND, [ref])
    return await _settle(ctx, me, "configmap", field_path, ref, found)


def taken_over(me: Me, cm: Mapping[str, Any], reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ConfigMap as `me` takes it over: `me`'s owner labels, every StrategyRollout ownerReference
    replaced by `reference` (`me`'s; None outside its namespace: references cannot cross namespaces),
    anything else kept, its resourceVersion kept as the write's precondition."""
    assert me.body is not None
    meta = _dict(cm.get("metadata"))
    refs = [r for r in _list(meta.get("ownerReferences")) if _dict(r).get("kind") != "StrategyRollout"]
    if reference is not None:
        refs.append(dict(reference))
    labels = {**_dict(meta.get("labels")), **routing_writer.owner_labels(dict(me.body))}
    return {**cm, "metadata": {**meta, "labels": labels, "ownerReferences": refs}}


async def take_config_map(ctx: Context, me: Me, cm: Mapping[str, Any]) -> None:
    """Every other holder is gone: the ConfigMap becomes `me`'s (labels, ownerReference), guarded by the
    resourceVersion it was judged with (else Conflict: the pass starts over)."""
    assert me.body is not None
    meta = _dict(cm.get("metadata"))
    ns, name = str(meta.get("namespace")), str(meta.get("name"))
    reference = ctx.kube.body(owner_reference(dict(me.body))) if ns == me.namespace else None
    try:
        written = await ctx.kube.replace_config_map(taken_over(me, cm, reference))
    except Conflict:
        ctx.watched.drop_config_map(ns, name)
        raise
    ctx.watched.offer_config_map(ctx.kube.body(written))
    log.info("strategyrollout %s/%s took over configmap %s/%s of a gone rollout", me.namespace, me.name, ns, name)


async def problems(ctx: Context, body: Mapping[str, Any], act: bool, me: Me | None = None) -> list[str]:
    """Every tenancy problem of a rollout body, naming the field. With `act` and none found, the claims
    are recorded (gone holders' ConfigMaps taken over, Deployments annotated) before returning: record,
    then act. Without `act` (admission, or a spec invalid for another reason) nothing is written."""
    meta = _dict(body.get("metadata"))
    if me is None:
        me = Me(str(meta.get("namespace")), str(meta.get("name")), _str(meta.get("uid")), body)
    s = scope(body)
    errors: list[str] = []
    denied: set[str] = set()
    for ns, field_path in s.namespaces.items():
        problem = await namespace_problem(ctx, ns, me.namespace)
        if problem is not None:
            errors.append(f"{field_path}: {problem}")
            denied.add(ns)  # not even read there
    found: list[tuple[str, Found]] = []
    for (ns, dep), field_path in s.deployments.items():
        if ns not in denied:
            found.append(("deployment", await deployment_check(ctx, me, field_path, (ns, dep))))
    for (ns, cm), field_path in s.config_maps.items():
        if ns not in denied:
            found.append(("configmap", await config_map_check(ctx, me, field_path, (ns, cm))))
    errors += [f.problem for _, f in found if f.problem is not None]
    if errors or not act or me.uid is None:
        return errors  # an invalid rollout claims nothing
    for kind, f in found:
        if f.claim is not None:
            await (claim_deployment if kind == "deployment" else take_config_map)(ctx, me, f.claim)
    return errors
