"""Tenancy on the real control plane (docs/safety.md "Tenancy"): a rollout acts only in namespaces that
let it in and only on objects that are its alone; the operator never adopts what it did not create.

First the whole operator: the session's operator (cluster-wide rights, like the chart's ClusterRole) is
the one acting; the attacker is a ServiceAccount that may create StrategyRollouts in its own namespace
and nothing else. Then tenancy's checks and writes one by one, in this process, on the operator's own
client against the same API server, in namespaces no operator watches (nothing else acts there).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client, config

from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients.kube import Conflict, Kube, configured
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.strategyrollout import orphans, tenancy
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.conftest import SESSION_NAMESPACE_PREFIX, fresh_namespace
from tests.integration.conftest import wait_for
from tests.integration.test_safety_core import rollout
from tests.integration.workloads import (
    ROLLOUT_AUTHOR_RULES,
    allow_rollouts_from,
    apply,
    deployment,
    get,
    replicas,
    role_writer,
    status,
)

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

CLAIMED_BY = "strategyrollouts.io/claimed-by"
OWNER_UID = "strategyrollouts.io/owner-uid"


def invalid(cluster: DevCluster, name: str, ns: str, timeout: float = 60) -> str:
    """The rollout's InvalidSpec message, once it is Invalid."""

    def check() -> str | None:
        st = status(cluster, name, ns)
        return str(st["message"]) if st.get("phase") == "Invalid" and st.get("reason") == "InvalidSpec" else None

    try:
        return str(wait_for(check, timeout, what=f"{ns}/{name} InvalidSpec"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {status(cluster, name, ns)}") from None


def at_promote(cluster: DevCluster, name: str, ns: str) -> dict[str, Any]:
    """The rollout (test_safety_core.rollout: 20 %, then a pause for a person) waiting at its pause."""
    return dict(
        wait_for(
            lambda: (st := status(cluster, name, ns)).get("reason") == "AwaitingPromotion" and st,
            90,
            what=f"{ns}/{name} at its pause",
        )
    )


def snapshot(cluster: DevCluster, ns: str, config_map: str, *deployments: str) -> dict[str, Any]:
    """What must not change: the ConfigMap as stored (resourceVersion included) and each Deployment's
    replicas and claim."""
    out: dict[str, Any] = {"cm": get(cluster, "configmap", config_map, ns)}
    for dep in deployments:
        body = get(cluster, "deployment", dep, ns) or {}
        meta = body.get("metadata") or {}
        out[dep] = (body["spec"]["replicas"], (meta.get("annotations") or {}).get(CLAIMED_BY))
    return out


def uid(cluster: DevCluster, name: str, ns: str) -> str:
    return str((get(cluster, "strategyrollout", name, ns) or {})["metadata"]["uid"])


@pytest.fixture
def victim(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> str:
    """trading-prod: fib-rsi rolling legacy -> pipeline, at 20 %, its routing ConfigMap fib-rsi-routing."""
    apply(cluster, deployment("legacy", namespace, 3, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    apply(cluster, rollout("fib-rsi", namespace))
    at_promote(cluster, "fib-rsi", namespace)
    return namespace


def test_another_namespace_cannot_take_over_routing_or_deployments_and_deleting_it_leaves_them(
    cluster: DevCluster,
    victim: str,
    other_namespace: str,
    live_operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    dev = other_namespace
    attacker, _ = role_writer(cluster, dev, "mallory", ROLLOUT_AUTHOR_RULES, tmp_path)
    # She may create rollouts in dev, and nothing at all in the victim's namespace.
    assert attacker.run("auth", "can-i", "create", "strategyrollouts", "-n", dev).stdout.strip() == "yes"
    for verb, what in (("create", "strategyrollouts"), ("get", "configmaps"), ("patch", "deployments")):
        assert attacker.run("auth", "can-i", verb, what, "-n", victim).stdout.strip() == "no", (verb, what)
    victim_uid = uid(cluster, "fib-rsi", victim)
    before = snapshot(cluster, victim, "fib-rsi-routing", "legacy", "pipeline")
    assert before["legacy"][1] == f"{victim}/fib-rsi/{victim_uid}"  # the victim's own claim, recorded
    assert before["cm"]["metadata"]["labels"][OWNER_UID] == victim_uid
    # Point a stage at the victim's namespace, its ConfigMap and its Deployments (swapped: "completing"
    # would scale the victim's stable to 0 and hand every key to the attacker's version).
    evil = rollout("evil", dev)
    evil["spec"]["stable"] = {"deployment": "pipeline", "version": "v0.0.1"}
    evil["spec"]["canary"] = {"deployment": "legacy", "version": "v6.6.6", "replicas": 1}
    evil["spec"]["routing"]["configMap"] = "fib-rsi-routing"
    evil["spec"]["stages"] = [{"name": "prod", "namespace": victim, "steps": [{"setWeight": 100}]}]
    evil["spec"]["scaleDownDelay"] = "1s"
    result = attacker.apply(evil)
    assert result.returncode == 0, result.stderr  # no admission webhook here: the operator must refuse
    message = invalid(cluster, "evil", dev)
    assert (
        f"spec.stages[0].namespace: namespace {victim} does not allow rollouts from {dev}"
        " (annotation strategyrollouts.io/allow-rollouts-from)"
    ) in message, message
    time.sleep(4)  # several passes of both rollouts
    assert snapshot(cluster, victim, "fib-rsi-routing", "legacy", "pipeline") == before
    assert status(cluster, "evil", dev).get("targets") in (None, [])  # it never routed anywhere
    assert status(cluster, "fib-rsi", victim)["reason"] == "AwaitingPromotion"
    # Deleting the refused rollout removes nothing of the victim's.
    assert attacker.run("delete", "srl", "evil", "-n", dev, "--wait=true").returncode == 0
    time.sleep(3)
    assert snapshot(cluster, victim, "fib-rsi-routing", "legacy", "pipeline") == before
    assert get(cluster, "configmap", "fib-rsi-routing", victim) is not None


def test_a_namespace_that_allows_it_gets_the_stage_and_its_claims_are_recorded(
    cluster: DevCluster, namespace: str, other_namespace: str, live_operator: OperatorProcess
) -> None:
    home, stage = namespace, other_namespace
    allow_rollouts_from(cluster, stage, "somewhere-else", home)
    for ns in (home, stage):
        apply(cluster, deployment("legacy", ns, 2, "v1.0.0"), deployment("pipeline", ns, 0, "v2.0.0"))
    body = rollout("multi", home)
    body["spec"]["stages"] = [
        {"name": "staging", "namespace": stage, "steps": [{"setWeight": 20}, {"pause": {}}]},
        {"name": "prod", "steps": [{"setWeight": 20}]},
    ]
    apply(cluster, body)
    at_promote(cluster, "multi", home)
    me = f"{home}/multi/{uid(cluster, 'multi', home)}"
    cm = get(cluster, "configmap", "multi-routing", stage) or {}
    assert cm["metadata"]["labels"][OWNER_UID] == me.rsplit("/", 1)[1]
    for dep in ("legacy", "pipeline"):
        annotations = (get(cluster, "deployment", dep, stage) or {})["metadata"].get("annotations") or {}
        assert annotations.get(CLAIMED_BY) == me, (dep, annotations)
    assert replicas(cluster, "pipeline", stage)[0] == 2  # it acts there
    # The namespace takes its permission back: the rollout stops (nothing more is written there).
    allow_rollouts_from(cluster, stage, "somewhere-else")
    # Seen at its next pass (any event; at most --idle-recheck later): a spec edit makes it now.
    cluster.kubectl("patch", "srl", "multi", "-n", home, "--type=merge", "-p", '{"spec":{"scaleDownDelay":"3s"}}')
    message = invalid(cluster, "multi", home)
    assert f"spec.stages[0].namespace: namespace {stage} does not allow rollouts from {home}" in message


def test_two_rollouts_naming_one_deployment_the_second_is_invalid_naming_the_first(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    ns = namespace
    apply(cluster, deployment("legacy", ns, 3, "v1.0.0"), deployment("pipeline", ns, 0, "v2.0.0"))
    apply(cluster, deployment("pipeline-b", ns, 0, "v3.0.0"))
    apply(cluster, rollout("first", ns))
    at_promote(cluster, "first", ns)
    before = snapshot(cluster, ns, "first-routing", "legacy", "pipeline", "pipeline-b")
    second = rollout("second", ns)  # the same stable Deployment, its own canary and ConfigMap
    second["spec"]["canary"] = {"deployment": "pipeline-b", "version": "v3.0.0", "replicas": 1}
    apply(cluster, second)
    message = invalid(cluster, "second", ns)
    assert f"spec.stable.deployment: deployment {ns}/legacy is claimed by strategyrollout {ns}/first" in message
    time.sleep(3)
    assert snapshot(cluster, ns, "first-routing", "legacy", "pipeline", "pipeline-b") == before
    assert get(cluster, "configmap", "second-routing", ns) is None  # it routed nothing
    # Once the first is gone its claim is stale: the second takes the Deployment and goes on.
    cluster.kubectl("delete", "srl", "first", "-n", ns)
    at_promote(cluster, "second", ns)
    annotations = (get(cluster, "deployment", "legacy", ns) or {})["metadata"]["annotations"]
    assert annotations[CLAIMED_BY] == f"{ns}/second/{uid(cluster, 'second', ns)}"


def test_two_rollouts_naming_one_config_map_the_second_is_invalid_and_deleting_it_leaves_the_config_map(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    ns = namespace
    for name in ("first", "second"):
        apply(cluster, deployment(f"{name}-legacy", ns, 3, "v1.0.0"), deployment(f"{name}-pipeline", ns, 0, "v2.0.0"))
    bodies = {}
    for name in ("first", "second"):
        body = rollout(name, ns)
        body["spec"]["stable"]["deployment"] = f"{name}-legacy"
        body["spec"]["canary"]["deployment"] = f"{name}-pipeline"
        body["spec"]["routing"]["configMap"] = "shared-routing"
        bodies[name] = body
    apply(cluster, bodies["first"])
    at_promote(cluster, "first", ns)
    before = snapshot(cluster, ns, "shared-routing", "first-legacy", "first-pipeline")
    apply(cluster, bodies["second"])
    message = invalid(cluster, "second", ns)
    assert f"spec.routing.configMap: configmap {ns}/shared-routing is claimed by strategyrollout {ns}/first" in message
    time.sleep(3)
    assert snapshot(cluster, ns, "shared-routing", "first-legacy", "first-pipeline") == before
    assert replicas(cluster, "second-pipeline", ns)[0] == 0 and replicas(cluster, "second-legacy", ns)[0] == 3
    cluster.kubectl("delete", "srl", "second", "-n", ns, "--wait=true")
    time.sleep(3)
    assert snapshot(cluster, ns, "shared-routing", "first-legacy", "first-pipeline") == before
    assert status(cluster, "first", ns)["reason"] == "AwaitingPromotion"


def test_a_config_map_nobody_created_for_it_is_never_adopted(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    ns = namespace
    apply(cluster, deployment("legacy", ns, 3, "v1.0.0"), deployment("pipeline", ns, 0, "v2.0.0"))
    theirs = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fib-rsi-routing", "namespace": ns}}
    apply(cluster, {**theirs, "data": {"routing.json": '{"assignments": {"K0": "mine"}}', "other": "keep"}})
    before = snapshot(cluster, ns, "fib-rsi-routing", "legacy", "pipeline")
    apply(cluster, rollout("fib-rsi", ns))
    message = invalid(cluster, "fib-rsi", ns)
    assert (
        f"spec.routing.configMap: configmap {ns}/fib-rsi-routing exists and was not created by the operator" in message
    )
    time.sleep(3)
    assert snapshot(cluster, ns, "fib-rsi-routing", "legacy", "pipeline") == before
    cluster.kubectl("delete", "srl", "fib-rsi", "-n", ns, "--wait=true")
    time.sleep(3)
    assert snapshot(cluster, ns, "fib-rsi-routing", "legacy", "pipeline") == before


# ---- tenancy's checks and writes, one by one ---------------------------------------------------------

# Not the session's prefix (t...): no operator of any session watches these namespaces, so what changes
# there is what the test's own calls wrote.
UNWATCHED = f"u{SESSION_NAMESPACE_PREFIX[1:]}"


class Recording(Kube):
    """The operator's client (its transport, no fence), remembering each request it sent: what was read
    or written, and where."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self.requests: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests.append((getattr(fn, "__name__", ""), args, kwargs))
        return await super().call(fn, *args, **kwargs)

    def sent(self, name: str) -> list[tuple[Any, ...]]:
        return [args for fn, args, _ in self.requests if fn == name]

    def writes(self) -> list[str]:
        return [fn for fn, _, _ in self.requests if fn.startswith(("patch", "replace", "create", "delete"))]


@pytest.fixture
async def kube(cluster: DevCluster, crds: None) -> AsyncIterator[Recording]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    api = client.ApiClient(configured(cfg))
    try:
        yield Recording(api)
    finally:
        api.close()


@pytest.fixture
def quiet(cluster: DevCluster) -> Iterator[str]:
    with fresh_namespace(cluster, UNWATCHED) as ns:
        yield ns


@pytest.fixture
def quiet_other(cluster: DevCluster) -> Iterator[str]:
    with fresh_namespace(cluster, UNWATCHED) as ns:
        yield ns


def created(cluster: DevCluster, body: dict[str, Any]) -> dict[str, Any]:
    """Apply, then the object as the API server has it (uid, resourceVersion)."""
    apply(cluster, body)
    meta = body["metadata"]
    found = get(cluster, body["kind"].lower(), meta["name"], meta["namespace"])
    assert found is not None
    return found


def version(cluster: DevCluster, kind: str, name: str, ns: str) -> str:
    return str((get(cluster, kind, name, ns) or {})["metadata"]["resourceVersion"])


def claim_of(cluster: DevCluster, name: str, ns: str) -> str | None:
    meta = (get(cluster, "deployment", name, ns) or {})["metadata"]
    return (meta.get("annotations") or {}).get(CLAIMED_BY)


def claim(body: dict[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}/{meta['uid']}"


def me(body: dict[str, Any]) -> tenancy.Me:
    meta = body["metadata"]
    return tenancy.Me(meta["namespace"], meta["name"], meta["uid"], body)


def workloads(cluster: DevCluster, ns: str, *names: str) -> None:
    apply(cluster, *(deployment(name, ns, 0, "v1.0.0") for name in names))


async def test_a_namespace_that_does_not_allow_it_is_named_and_nothing_there_is_read_or_written(
    cluster: DevCluster, quiet: str, quiet_other: str, kube: Recording
) -> None:
    dev, prod = quiet, quiet_other
    allow_rollouts_from(cluster, prod, "staging")
    workloads(cluster, prod, "legacy", "pipeline")
    body = rollout("r", dev)
    body["spec"]["stages"] = [
        {"name": "a", "steps": [{"setWeight": 20}]},
        {"name": "b", "namespace": prod, "steps": [{"setWeight": 20}]},
    ]
    body = created(cluster, body)
    before = {dep: version(cluster, "deployment", dep, prod) for dep in ("legacy", "pipeline")}
    errors = await tenancy.problems(Context(kube=kube), body, act=True)
    assert errors == [
        f"spec.stages[1].namespace: namespace {prod} does not allow rollouts from {dev}"
        " (annotation strategyrollouts.io/allow-rollouts-from)"
    ]
    assert kube.sent("read_namespace") == [(prod,)]  # its annotation, and nothing else there
    assert [r for r in kube.requests if prod in r[1] and r[0] != "read_namespace"] == []
    assert kube.writes() == []
    assert {dep: version(cluster, "deployment", dep, prod) for dep in before} == before
    # The namespace lets it in: checked and claimed there.
    allow_rollouts_from(cluster, prod, "staging", dev)
    assert await tenancy.problems(Context(kube=kube), body, act=True) == []
    assert claim_of(cluster, "legacy", prod) == claim(body)
    missing = f"{UNWATCHED}nowhere-{uuid.uuid4().hex[:6]}"
    body["spec"]["stages"] = [{"name": "b", "namespace": missing, "steps": [{"setWeight": 20}]}]
    (error,) = await tenancy.problems(Context(kube=kube), body, act=True)
    assert f"spec.stages[0].namespace: namespace {missing} does not exist" in error


async def test_a_free_deployment_is_claimed_with_its_resource_version_and_then_read_from_the_cache(
    cluster: DevCluster, quiet: str, kube: Recording
) -> None:
    ns = quiet
    workloads(cluster, ns, "legacy", "pipeline")
    body = created(cluster, rollout("r", ns))
    ctx = Context(kube=kube)
    before = {dep: version(cluster, "deployment", dep, ns) for dep in ("legacy", "pipeline")}
    assert await tenancy.problems(ctx, body, act=False) == []  # admission, or invalid for another reason
    assert kube.writes() == [] and {dep: version(cluster, "deployment", dep, ns) for dep in before} == before
    assert await tenancy.problems(ctx, body, act=True) == []
    assert {dep: claim_of(cluster, dep, ns) for dep in before} == {dep: claim(body) for dep in before}
    # Each claim was a write conditional on the Deployment as judged (its resourceVersion then).
    sent = {args[0]: args[2] for args in kube.sent("patch_namespaced_deployment")}
    assert sent == {dep: {"metadata": {"resourceVersion": before[dep], "annotations": {CLAIMED_BY: claim(body)}}}
                    for dep in before}  # fmt: skip
    kube.requests.clear()
    assert await tenancy.problems(ctx, body, act=True) == []
    assert kube.sent("read_namespaced_deployment") == [] and kube.writes() == []  # its claims come from the cache


async def test_a_deployment_claimed_by_a_live_rollout_is_refused_naming_it(
    cluster: DevCluster, quiet: str, kube: Recording
) -> None:
    ns = quiet
    workloads(cluster, ns, "legacy", "pipeline")
    first = created(cluster, rollout("fib-rsi", ns))
    assert await tenancy.problems(Context(kube=kube), first, act=True) == []
    before = {dep: version(cluster, "deployment", dep, ns) for dep in ("legacy", "pipeline")}
    kube.requests.clear()
    errors = await tenancy.problems(Context(kube=kube), created(cluster, rollout("other", ns)), act=True)
    assert errors == [
        f"spec.stable.deployment: deployment {ns}/legacy is claimed by strategyrollout {ns}/fib-rsi",
        f"spec.canary.deployment: deployment {ns}/pipeline is claimed by strategyrollout {ns}/fib-rsi",
    ]
    assert kube.writes() == [] and {dep: version(cluster, "deployment", dep, ns) for dep in before} == before
    assert claim_of(cluster, "legacy", ns) == claim(first)


@pytest.mark.parametrize("holder", ["deleted", "recreated", "no longer names it"])
async def test_a_claim_whose_holder_is_gone_is_taken_over_conditionally(
    cluster: DevCluster, quiet: str, kube: Recording, holder: str
) -> None:
    ns = quiet
    workloads(cluster, ns, "legacy", "pipeline")
    stale = f"{ns}/fib-rsi/{uuid.uuid4()}"  # no such rollout, or an earlier object of that name
    if holder == "recreated":
        created(cluster, rollout("fib-rsi", ns))
    elif holder == "no longer names it":
        first = rollout("fib-rsi", ns)
        first["spec"]["stable"]["deployment"], first["spec"]["canary"]["deployment"] = "elsewhere", "elsewhere-2"
        stale = claim(created(cluster, first))  # its own claim, made when it named them
    cluster.kubectl("annotate", "deployment", "legacy", "pipeline", "-n", ns, f"{CLAIMED_BY}={stale}")
    seen = version(cluster, "deployment", "legacy", ns)
    other = created(cluster, rollout("other", ns))
    assert await tenancy.problems(Context(kube=kube), other, act=True) == []
    assert claim_of(cluster, "legacy", ns) == claim_of(cluster, "pipeline", ns) == claim(other)
    sent = {args[0]: args[2]["metadata"]["resourceVersion"] for args in kube.sent("patch_namespaced_deployment")}
    assert sent["legacy"] == seen


async def test_a_claim_by_a_rollout_its_namespace_does_not_let_in_holds_nothing(
    cluster: DevCluster, quiet: str, quiet_other: str, kube: Recording
) -> None:
    dev, prod = quiet, quiet_other
    evil = rollout("evil", dev)
    evil["spec"]["stages"] = [{"name": "p", "namespace": prod, "steps": [{"setWeight": 100}]}]
    evil = created(cluster, evil)  # it exists and names prod's Deployments; prod never let dev in
    workloads(cluster, prod, "legacy", "pipeline")
    cluster.kubectl("annotate", "deployment", "legacy", "-n", prod, f"{CLAIMED_BY}={claim(evil)}")
    mine = created(cluster, rollout("fib-rsi", prod))
    assert await tenancy.problems(Context(kube=kube), mine, act=True) == []
    assert claim_of(cluster, "legacy", prod) == claim(mine)


async def test_a_claim_written_meanwhile_is_a_conflict_and_garbage_is_named(
    cluster: DevCluster, quiet: str, kube: Recording
) -> None:
    ns = quiet
    workloads(cluster, ns, "legacy", "pipeline")
    body = created(cluster, rollout("r", ns))
    ctx = Context(kube=kube)
    seen = await kube.deployment_body(ns, "legacy")  # judged free as read ...
    assert seen is not None and tenancy.judge_deployment(me(body), "f", seen).claim is not None
    cluster.kubectl("annotate", "deployment", "legacy", "-n", ns, "someone=else")  # ... then someone wrote it
    with pytest.raises(Conflict):
        await tenancy.claim_deployment(ctx, me(body), seen)
    assert claim_of(cluster, "legacy", ns) is None
    cluster.kubectl("annotate", "deployment", "legacy", "-n", ns, f"{CLAIMED_BY}=not-a-claim")
    errors = await tenancy.problems(Context(kube=kube), body, act=True)
    assert errors and "which names no strategyrollout" in errors[0]
    assert claim_of(cluster, "legacy", ns) == "not-a-claim" and claim_of(cluster, "pipeline", ns) is None


async def test_config_maps_of_nobody_or_of_a_live_rollout_are_refused_and_never_written(
    cluster: DevCluster, quiet: str, kube: Recording
) -> None:
    ns = quiet
    apply(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r-routing", "namespace": ns}})
    errors = await tenancy.problems(Context(kube=kube), created(cluster, rollout("r", ns)), act=True)
    assert len(errors) == 1
    assert errors[0].startswith(f"spec.routing.configMap: configmap {ns}/r-routing exists and was not"), errors
    first = rollout("fib-rsi", ns)
    first["spec"]["routing"]["configMap"] = "shared"
    first = created(cluster, first)
    assert await routing_writer.update(kube, ns, "shared", {"weight": 20}, owner=first) == (1, True)
    before = get(cluster, "configmap", "shared", ns)
    second = rollout("second", ns)
    second["spec"]["routing"]["configMap"] = "shared"
    kube.requests.clear()
    errors = await tenancy.problems(Context(kube=kube), created(cluster, second), act=True)
    assert errors == [f"spec.routing.configMap: configmap {ns}/shared is claimed by strategyrollout {ns}/fib-rsi"]
    assert kube.writes() == [] and get(cluster, "configmap", "shared", ns) == before


async def test_a_config_map_of_a_gone_rollout_is_taken_over_with_labels_and_reference(
    cluster: DevCluster, quiet: str, kube: Recording
) -> None:
    ns = quiet
    gone = created(cluster, rollout("r", ns))
    cluster.kubectl("delete", "srl", "r", "-n", ns, "--wait=true")
    keep = created(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep", "namespace": ns}})
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": keep["metadata"]["uid"]}
    meta = {
        "name": "r-routing",
        "namespace": ns,
        "labels": routing_writer.owner_labels(gone),
        "ownerReferences": [other],
    }
    apply(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"routing.json": "{}"}})
    seen = version(cluster, "configmap", "r-routing", ns)
    mine = created(cluster, rollout("r", ns))  # the same name, a new object
    assert await tenancy.problems(Context(kube=kube), mine, act=True) == []
    (sent,) = kube.sent("replace_namespaced_config_map")
    assert sent[2]["metadata"]["resourceVersion"] == seen  # conditional on the ConfigMap as judged
    cm = get(cluster, "configmap", "r-routing", ns) or {}
    assert cm["metadata"]["labels"][OWNER_UID] == mine["metadata"]["uid"]
    assert [r["uid"] for r in cm["metadata"]["ownerReferences"]] == [keep["metadata"]["uid"], mine["metadata"]["uid"]]
    assert cm["data"] == {"routing.json": "{}"}


async def test_the_writer_never_overwrites_a_config_map_made_for_another(
    cluster: DevCluster, quiet: str, quiet_other: str, kube: Recording
) -> None:
    ns = quiet
    first = created(cluster, rollout("fib-rsi", ns))
    assert await routing_writer.update(kube, ns, "fib-rsi-routing", {"weight": 20}, owner=first) == (1, True)
    before = get(cluster, "configmap", "fib-rsi-routing", ns) or {}
    evil = created(cluster, rollout("evil", quiet_other))
    kube.requests.clear()
    with pytest.raises(routing_writer.NotOwned):
        await routing_writer.update(kube, ns, "fib-rsi-routing", {"weight": 100}, owner=evil)
    assert kube.writes() == [] and get(cluster, "configmap", "fib-rsi-routing", ns) == before
    assert await routing_writer.update(kube, ns, "fib-rsi-routing", {"weight": 5}, owner=first) == (2, True)
    after = get(cluster, "configmap", "fib-rsi-routing", ns) or {}
    assert after["metadata"]["labels"] == before["metadata"]["labels"] == routing_writer.owner_labels(first)


async def test_deleting_a_rollout_removes_only_what_was_created_for_it_alone_with_preconditions(
    cluster: DevCluster, quiet: str, quiet_other: str, kube: Recording
) -> None:
    prod = quiet
    owner = created(cluster, rollout("r", quiet_other))  # its routing ConfigMaps in prod: labels, no reference
    foreign = created(cluster, rollout("fib-rsi", prod))

    def config_map(name: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
        labels = routing_writer.owner_labels(owner)
        meta = {"name": name, "namespace": prod, "labels": labels, "ownerReferences": refs}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    shared = [{"apiVersion": foreign["apiVersion"], "kind": "StrategyRollout", "name": "fib-rsi",
               "uid": foreign["metadata"]["uid"]}]  # fmt: skip
    apply(cluster, config_map("mine", []), config_map("shared", shared), config_map("changed", []))
    # Listed by a sweep, then changed before its delete: the delete's preconditions keep it.
    listed = await kube.call(kube.core.read_namespaced_config_map, "changed", prod)
    cluster.kubectl("label", "configmap", "changed", "-n", prod, "someone=else")
    assert await orphans._delete(kube, listed) is False
    assert get(cluster, "configmap", "changed", prod) is not None
    cluster.kubectl("delete", "configmap", "changed", "-n", prod)
    assert await orphans.remove_owned(kube, owner["metadata"]["uid"]) == 1
    assert get(cluster, "configmap", "mine", prod) is None
    assert get(cluster, "configmap", "shared", prod) is not None


async def test_a_config_map_handed_to_a_rollout_by_name_is_taken_by_it_alone(
    cluster: DevCluster, quiet: str, kube: Recording
) -> None:
    ns = quiet
    handed = {routing_writer.OWNER_NAMESPACE: ns, routing_writer.OWNER_NAME: "fib-rsi"}  # made before the rollout
    meta = {"name": "shared", "namespace": ns, "labels": handed}
    apply(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"routing.json": "{}"}})
    before = get(cluster, "configmap", "shared", ns)
    other = rollout("other", ns)
    other["spec"]["routing"]["configMap"] = "shared"
    errors = await tenancy.problems(Context(kube=kube), created(cluster, other), act=True)
    assert errors == [f"spec.routing.configMap: configmap {ns}/shared is claimed by strategyrollout {ns}/fib-rsi"]
    assert kube.writes() == [] and get(cluster, "configmap", "shared", ns) == before
    body = rollout("fib-rsi", ns)
    body["spec"]["routing"]["configMap"] = "shared"
    body = created(cluster, body)
    assert await tenancy.problems(Context(kube=kube), body, act=True) == []
    cm = get(cluster, "configmap", "shared", ns) or {}
    assert cm["metadata"]["labels"] == routing_writer.owner_labels(body)
    assert [r["uid"] for r in cm["metadata"]["ownerReferences"]] == [body["metadata"]["uid"]]
