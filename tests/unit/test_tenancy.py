"""Tenancy (operator/strategyrollout/tenancy.py, clients/routing.py, strategyrollout/orphans.py) against a
fake API server: which namespaces, which claims, what is written and with which precondition."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest
from kubernetes import client

from strategy_rollouts.operator.clients import routing
from strategy_rollouts.operator.clients.kube import Conflict, Kube
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.strategyrollout import orphans, tenancy
from strategy_rollouts.operator.strategyrollout.tenancy import CLAIMED_BY, Me, scope

SERIALIZER = client.ApiClient()


def rollout_body(ns: str, name: str, uid: str, stages: list[dict[str, Any]] | None = None, **spec: Any) -> dict:
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"namespace": ns, "name": name, "uid": uid, "resourceVersion": "1"},
        "spec": {
            "stable": {"deployment": "legacy"},
            "canary": {"deployment": "pipeline"},
            "stages": stages if stages is not None else [{"name": "prod"}],
            **spec,
        },
    }


class FakeKube:
    """Just what tenancy, routing and orphans call; every write recorded with its precondition."""

    def __init__(self) -> None:
        self.namespaces: dict[str, dict[str, str]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.rollouts: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, Any]] = []
        self.reads: list[tuple[str, str, str]] = []
        self.version = 100

    def _bump(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(body)

    def body(self, model: Any) -> dict[str, Any]:
        return model if isinstance(model, dict) else cast(dict[str, Any], SERIALIZER.sanitize_for_serialization(model))

    async def namespace_annotations(self, name: str) -> dict[str, str] | None:
        self.reads.append(("namespace", "", name))
        return self.namespaces.get(name)

    async def deployment_body(self, ns: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("deployment", ns, name))
        dep = self.deployments.get((ns, name))
        return copy.deepcopy(dep) if dep else None

    async def annotate_deployment(self, ns: str, name: str, annotations: dict[str, str], rv: str) -> dict[str, Any]:
        self.writes.append(("annotate", (ns, name, annotations, rv)))
        dep = self.deployments[(ns, name)]
        if dep["metadata"]["resourceVersion"] != rv:
            raise Conflict("changed")
        dep["metadata"].setdefault("annotations", {}).update(annotations)
        return self._bump(dep)

    async def config_map_body(self, ns: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("configmap", ns, name))
        cm = self.config_maps.get((ns, name))
        return copy.deepcopy(cm) if cm else None

    async def replace_config_map(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        self.writes.append(("replace", copy.deepcopy(body)))
        held = self.config_maps[(meta["namespace"], meta["name"])]
        if held["metadata"]["resourceVersion"] != meta["resourceVersion"]:
            raise Conflict("changed")
        self.config_maps[(meta["namespace"], meta["name"])] = copy.deepcopy(body)
        return self._bump(self.config_maps[(meta["namespace"], meta["name"])])

    async def write_config_map(self, ns: str, name: str, data: dict[str, str], **kw: Any) -> dict[str, Any]:
        self.writes.append(("create", (ns, name, kw)))
        body = {"metadata": {"namespace": ns, "name": name, "labels": kw.get("labels") or {}}, "data": data}
        self.config_maps[(ns, name)] = body
        return self._bump(body)

    async def get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.rollouts.get((ns, name)))

    def deployment(self, ns: str, name: str, claim: str | None = None) -> None:
        annotations = {CLAIMED_BY: claim} if claim else {}
        meta = {"namespace": ns, "name": name, "resourceVersion": "7", "annotations": annotations}
        self.deployments[(ns, name)] = {"metadata": meta, "spec": {"replicas": 2}}

    def config_map(self, ns: str, name: str, labels: dict[str, str], refs: list[dict[str, Any]] | None = None) -> None:
        meta = {"namespace": ns, "name": name, "resourceVersion": "9", "labels": labels, "ownerReferences": refs or []}
        self.config_maps[(ns, name)] = {"metadata": meta, "data": {"routing.json": "{}"}}


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


def context(kube: FakeKube) -> Context:
    return Context(kube=cast(Kube, kube))


def labels_for(owner: dict[str, Any]) -> dict[str, str]:
    return routing.owner_labels(owner)


# ---- pure parts ---------------------------------------------------------------------------------


def test_scope_is_every_stage_namespace_and_the_current_runs_targets_with_their_fields() -> None:
    body = rollout_body("dev", "r", "u1", [{"name": "a"}, {"name": "b", "namespace": "prod"}])
    body["spec"]["routing"] = {"configMap": "shared"}
    body["status"] = {"targets": [{"namespace": "old", "configMap": "r-routing"}]}
    s = scope(body)
    assert s.namespaces == {"dev": "spec.stages[0].namespace", "prod": "spec.stages[1].namespace",
                            "old": "status.targets[0].namespace"}  # fmt: skip
    assert s.deployments[("prod", "legacy")] == "spec.stable.deployment"
    assert s.deployments[("old", "pipeline")] == "spec.canary.deployment"
    assert len(s.deployments) == 6
    assert s.config_maps == {("dev", "shared"): "spec.routing.configMap", ("prod", "shared"): "spec.routing.configMap",
                             ("old", "r-routing"): "status.targets[0].configMap"}  # fmt: skip
    assert scope({"metadata": {"namespace": "x", "name": "y"}, "spec": "garbage"}).namespaces == {}


def test_allowed_sources_and_claims_parse() -> None:
    assert tenancy.allowed_sources({tenancy.ALLOW_FROM: " ns-a, ns-b ,,"}) == {"ns-a", "ns-b"}
    assert tenancy.allowed_sources({}) == set()
    assert tenancy.parse_claim("a/b/c") == ("a", "b", "c")
    assert tenancy.parse_claim("a/b") is None and tenancy.parse_claim("a//c") is None
    me = Me("dev", "r", "u2")
    assert me.holds("dev", "r", "u2") and not me.holds("dev", "r", "u1") and me.earlier("dev", "r", "u1")
    assert Me("dev", "r", None).holds("dev", "r", "anything")  # admission: no uid yet


def test_owned_by_needs_exactly_that_uid_in_labels_and_references() -> None:
    owner = rollout_body("dev", "r", "u1")
    cm = {"metadata": {"labels": labels_for(owner)}}
    assert routing.owned_by(cm, owner)
    foreign_ref = {"apiVersion": "strategyrollouts.io/v1alpha1", "kind": "StrategyRollout", "name": "x", "uid": "u9"}
    assert not routing.owned_by({"metadata": {**cm["metadata"], "ownerReferences": [foreign_ref]}}, owner)
    assert not routing.owned_by({"metadata": {"labels": {routing.LABEL: "true"}}}, owner)


# ---- namespaces ---------------------------------------------------------------------------------


async def test_a_namespace_that_does_not_allow_it_is_named_and_nothing_there_is_read_or_written(kube: FakeKube) -> None:
    kube.namespaces["prod"] = {tenancy.ALLOW_FROM: "staging"}
    kube.deployment("prod", "legacy")
    body = rollout_body("dev", "r", "u1", [{"name": "a"}, {"name": "b", "namespace": "prod"}])
    errors = await tenancy.problems(context(kube), body, act=True)
    assert errors == [
        "spec.stages[1].namespace: namespace prod does not allow rollouts from dev"
        " (annotation strategyrollouts.io/allow-rollouts-from)"
    ]
    assert not [r for r in kube.reads if r[1] == "prod"] and kube.writes == []
    kube.namespaces["prod"] = {tenancy.ALLOW_FROM: "staging,dev"}
    assert await tenancy.problems(context(kube), body, act=True) == []
    missing = rollout_body("dev", "r", "u1", [{"name": "b", "namespace": "nowhere"}])
    assert "namespace nowhere does not exist" in (await tenancy.problems(context(kube), missing, act=True))[0]


# ---- Deployments --------------------------------------------------------------------------------


async def test_a_free_deployment_is_claimed_with_its_resource_version_and_then_read_from_the_cache(
    kube: FakeKube,
) -> None:
    kube.deployment("dev", "legacy")
    kube.deployment("dev", "pipeline")
    ctx = context(kube)
    body = rollout_body("dev", "r", "u1")
    assert await tenancy.problems(ctx, body, act=False) == [] and kube.writes == []  # invalid: claims nothing
    assert await tenancy.problems(ctx, body, act=True) == []
    assert sorted(w[1] for w in kube.writes if w[0] == "annotate") == [
        ("dev", "legacy", {CLAIMED_BY: "dev/r/u1"}, "7"),
        ("dev", "pipeline", {CLAIMED_BY: "dev/r/u1"}, "7"),
    ]
    kube.reads.clear()
    assert await tenancy.problems(ctx, body, act=True) == []
    assert [r for r in kube.reads if r[0] == "deployment"] == []  # its claims come from the cache now


async def test_a_deployment_claimed_by_a_live_rollout_is_refused_naming_it(kube: FakeKube) -> None:
    first = rollout_body("trading", "fib-rsi", "u1")
    kube.rollouts[("trading", "fib-rsi")] = first
    kube.deployment("trading", "legacy", "trading/fib-rsi/u1")
    errors = await tenancy.problems(context(kube), rollout_body("trading", "other", "u2"), act=True)
    assert errors == ["spec.stable.deployment: deployment trading/legacy is claimed by strategyrollout trading/fib-rsi"]
    assert kube.writes == []


@pytest.mark.parametrize(
    "holder",
    [
        None,  # deleted
        rollout_body("trading", "fib-rsi", "u0"),  # deleted and recreated: another object
        rollout_body("trading", "fib-rsi", "u1", stable={"deployment": "elsewhere"}),  # no longer names it
    ],
)
async def test_a_claim_whose_holder_is_gone_is_taken_over_conditionally(kube: FakeKube, holder: Any) -> None:
    if holder is not None:
        kube.rollouts[("trading", "fib-rsi")] = holder
    kube.deployment("trading", "legacy", "trading/fib-rsi/u1")
    assert await tenancy.problems(context(kube), rollout_body("trading", "other", "u2"), act=True) == []
    assert kube.writes == [("annotate", ("trading", "legacy", {CLAIMED_BY: "trading/other/u2"}, "7"))]


async def test_a_claim_by_a_rollout_its_namespace_does_not_let_in_holds_nothing(kube: FakeKube) -> None:
    kube.rollouts[("dev", "evil")] = rollout_body("dev", "evil", "u6", [{"name": "p", "namespace": "prod"}])
    kube.namespaces["prod"] = {}
    kube.deployment("prod", "legacy", "dev/evil/u6")
    assert await tenancy.problems(context(kube), rollout_body("prod", "fib-rsi", "u1"), act=True) == []
    assert kube.writes[0][1][2] == {CLAIMED_BY: "prod/fib-rsi/u1"}


async def test_a_claim_written_meanwhile_is_a_conflict_and_garbage_is_named(kube: FakeKube) -> None:
    kube.deployment("dev", "legacy")
    ctx = context(kube)
    body = rollout_body("dev", "r", "u1")
    real = kube.deployment_body

    async def racing(ns: str, name: str) -> dict[str, Any] | None:
        seen = await real(ns, name)
        kube.deployments[("dev", "legacy")]["metadata"]["resourceVersion"] = "8"  # someone wrote first
        return seen

    kube.deployment_body = racing  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        await tenancy.problems(ctx, body, act=True)
    kube.deployment_body = real  # type: ignore[method-assign]
    kube.deployment("dev", "legacy", "not-a-claim")
    errors = await tenancy.problems(ctx, body, act=True)
    assert errors and "which names no strategyrollout" in errors[0]


# ---- routing ConfigMaps -------------------------------------------------------------------------


async def test_config_maps_of_nobody_or_of_a_live_rollout_are_refused_and_never_written(kube: FakeKube) -> None:
    kube.config_map("trading", "r-routing", {})
    errors = await tenancy.problems(context(kube), rollout_body("trading", "r", "u2"), act=True)
    assert errors and errors[0].startswith("spec.routing.configMap: configmap trading/r-routing exists and was not")
    first = rollout_body("trading", "fib-rsi", "u1", routing={"configMap": "shared"})
    kube.rollouts[("trading", "fib-rsi")] = first
    kube.config_map("trading", "shared", labels_for(first))
    second = rollout_body("trading", "second", "u2", routing={"configMap": "shared"})
    errors = await tenancy.problems(context(kube), second, act=True)
    assert errors == ["spec.routing.configMap: configmap trading/shared is claimed by strategyrollout trading/fib-rsi"]
    assert kube.writes == []


async def test_a_config_map_of_a_gone_rollout_is_taken_over_with_labels_and_reference(kube: FakeKube) -> None:
    gone = rollout_body("trading", "r", "u0")
    ref = {"apiVersion": "strategyrollouts.io/v1alpha1", "kind": "StrategyRollout", "name": "r", "uid": "u0"}
    other = {"apiVersion": "v1", "kind": "Something", "name": "keep", "uid": "k"}
    kube.config_map("trading", "r-routing", labels_for(gone), [ref, other])
    me = rollout_body("trading", "r", "u1")
    assert await tenancy.problems(context(kube), me, act=True) == []
    (kind, written), *_ = kube.writes
    assert kind == "replace" and written["metadata"]["resourceVersion"] == "9"
    assert written["metadata"]["labels"][routing.OWNER_UID] == "u1"
    assert [r["uid"] for r in written["metadata"]["ownerReferences"]] == ["k", "u1"]


async def test_the_writer_never_overwrites_a_config_map_made_for_another(kube: FakeKube) -> None:
    first = rollout_body("trading", "fib-rsi", "u1")
    kube.config_map("trading", "fib-rsi-routing", labels_for(first))
    evil = rollout_body("dev", "evil", "u6")
    with pytest.raises(routing.NotOwned):
        await routing.update(cast(Kube, kube), "trading", "fib-rsi-routing", {"weight": 100}, owner=evil)
    assert kube.writes == []
    revision, written = await routing.update(cast(Kube, kube), "trading", "fib-rsi-routing", {"weight": 5}, owner=first)
    assert written and revision == 1
    assert kube.config_maps[("trading", "fib-rsi-routing")]["metadata"]["labels"] == labels_for(first)


# ---- deleting a rollout -------------------------------------------------------------------------


class ListingKube(FakeKube):
    """orphans' generated-client calls: a list by label and a delete with preconditions."""

    def __init__(self, items: list[client.V1ConfigMap]) -> None:
        super().__init__()
        self.items = items
        self.deleted: list[tuple[str, str, str, str]] = []
        self.core = self

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def list_config_map_for_all_namespaces(self, label_selector: str) -> client.V1ConfigMapList:
        key, _, value = label_selector.partition("=")
        return client.V1ConfigMapList(items=[c for c in self.items if (c.metadata.labels or {}).get(key) == value])

    async def delete_config_map(self, ns: str, name: str, uid: str, rv: str) -> bool:
        self.deleted.append((ns, name, uid, rv))
        return True


async def test_deleting_a_rollout_removes_only_what_was_created_for_it_alone_with_preconditions() -> None:
    owner = rollout_body("dev", "r", "u1")

    def cm(name: str, refs: list[client.V1OwnerReference] | None = None) -> client.V1ConfigMap:
        meta = client.V1ObjectMeta(namespace="prod", name=name, uid=f"cm-{name}", resource_version="5",
                                   labels=labels_for(owner), owner_references=refs)  # fmt: skip
        return client.V1ConfigMap(metadata=meta)

    foreign = client.V1OwnerReference(api_version="strategyrollouts.io/v1alpha1", kind="StrategyRollout",
                                      name="fib-rsi", uid="u9")  # fmt: skip
    kube = ListingKube([cm("mine"), cm("shared", [foreign])])
    assert await orphans.remove_owned(cast(Kube, kube), "u1") == 1
    assert kube.deleted == [("prod", "mine", "cm-mine", "5")]


async def test_a_config_map_handed_to_a_rollout_by_name_is_taken_by_it_alone(kube: FakeKube) -> None:
    handed = {routing.OWNER_NAMESPACE: "trading", routing.OWNER_NAME: "fib-rsi"}  # made before the rollout
    kube.config_map("trading", "shared", handed)
    other = rollout_body("trading", "other", "u2", routing={"configMap": "shared"})
    errors = await tenancy.problems(context(kube), other, act=True)
    assert errors == ["spec.routing.configMap: configmap trading/shared is claimed by strategyrollout trading/fib-rsi"]
    assert kube.writes == []
    me = rollout_body("trading", "fib-rsi", "u1", routing={"configMap": "shared"})
    assert await tenancy.problems(context(kube), me, act=True) == []
    (kind, written), *_ = kube.writes
    assert kind == "replace" and written["metadata"]["labels"] == labels_for(me)
    assert [r["uid"] for r in written["metadata"]["ownerReferences"]] == ["u1"]
