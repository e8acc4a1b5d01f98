"""Tenancy's decisions as pure functions (operator/strategyrollout/tenancy.py, clients/routing.py,
strategyrollout/orphans.py): which namespaces, whose claim, what a takeover writes, what deleting removes.

What needs the API server (reads, conditional writes, a Conflict, what is never read) is in
tests/integration/test_tenancy.py, against the real control plane."""

from __future__ import annotations

from typing import Any

import pytest

from strategy_rollouts.operator.clients import routing
from strategy_rollouts.operator.strategyrollout import orphans, tenancy
from strategy_rollouts.operator.strategyrollout.tenancy import CLAIMED_BY, PREPARED, Found, Me, scope


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


def me(body: dict[str, Any]) -> Me:
    meta = body["metadata"]
    return Me(meta["namespace"], meta["name"], meta["uid"], body)


def deployment(ns: str, name: str, claim: str | None = None) -> dict[str, Any]:
    annotations = {CLAIMED_BY: claim} if claim else {}
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": "7", "annotations": annotations}}


def config_map(ns: str, name: str, labels: dict[str, str], refs: list[dict[str, Any]] | None = None) -> dict:
    meta = {"namespace": ns, "name": name, "resourceVersion": "9", "labels": labels, "ownerReferences": refs or []}
    return {"metadata": meta, "data": {"routing.json": "{}"}}


def reference(name: str, uid: str, kind: str = "StrategyRollout") -> dict[str, Any]:
    api = "strategyrollouts.io/v1alpha1" if kind == "StrategyRollout" else "v1"
    return {"apiVersion": api, "kind": kind, "name": name, "uid": uid}


# ---- what a rollout acts on ---------------------------------------------------------------------


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
    m = Me("dev", "r", "u2")
    assert m.holds("dev", "r", "u2") and not m.holds("dev", "r", "u1") and m.earlier("dev", "r", "u1")
    assert Me("dev", "r", None).holds("dev", "r", "anything")  # admission: no uid yet


# ---- namespaces ---------------------------------------------------------------------------------


def test_a_namespace_lets_in_itself_and_exactly_the_namespaces_its_annotation_lists() -> None:
    verdict = tenancy.namespace_verdict
    assert verdict("dev", "dev", None) is None  # a namespace allows itself, annotation or not
    assert verdict("prod", "dev", {tenancy.ALLOW_FROM: "staging"}) == (
        "namespace prod does not allow rollouts from dev (annotation strategyrollouts.io/allow-rollouts-from)"
    )
    assert verdict("prod", "dev", {}) is not None
    assert verdict("prod", "dev", {tenancy.ALLOW_FROM: "staging,dev"}) is None
    assert verdict("prod", "dev", {tenancy.ALLOW_FROM: "*"}) is not None  # no wildcards
    assert verdict("prod", "dev", {tenancy.ALLOW_FROM: "dev-2"}) is not None  # whole names only
    assert verdict("nowhere", "dev", None) == (
        "namespace nowhere does not exist (annotation strategyrollouts.io/allow-rollouts-from must list dev)"
    )


# ---- Deployments --------------------------------------------------------------------------------


def test_a_free_deployment_is_claimed_as_read_and_one_claimed_by_me_needs_nothing() -> None:
    body = rollout_body("dev", "r", "u1")
    free = deployment("dev", "legacy")
    assert tenancy.judge_deployment(me(body), "spec.stable.deployment", free) == Found(claim=free)
    assert tenancy.judge_deployment(me(body), "f", deployment("dev", "legacy", "dev/r/u1")) == Found()
    # An earlier object of my name (deleted and made again) is gone: its claim is mine to take, unread.
    earlier = deployment("dev", "legacy", "dev/r/u0")
    assert tenancy.judge_deployment(me(body), "f", earlier) == Found(claim=earlier)
    assert tenancy.judge_deployment(Me("dev", "r", None), "f", earlier) == Found()  # admission: by name


def test_a_deployment_claimed_by_another_waits_for_that_one_and_the_message_names_it() -> None:
    held = deployment("trading", "legacy", "trading/fib-rsi/u1")
    found = tenancy.judge_deployment(me(rollout_body("trading", "other", "u2")), "spec.stable.deployment", held)
    assert found.problem is None and found.holders == [("trading", "fib-rsi", "u1")]
    assert tenancy.claimed("spec.stable.deployment", "deployment", ("trading", "legacy"), found.holders[0]) == (
        "spec.stable.deployment: deployment trading/legacy is claimed by strategyrollout trading/fib-rsi"
    )


def test_a_claim_annotation_that_names_no_rollout_is_named_and_never_overwritten() -> None:
    found = tenancy.judge_deployment(me(rollout_body("dev", "r", "u1")), "spec.stable.deployment",
                                     deployment("dev", "legacy", "not-a-claim"))  # fmt: skip
    assert found.claim is None and found.problem is not None
    assert found.problem.startswith("spec.stable.deployment: deployment dev/legacy has annotation")
    assert "which names no strategyrollout" in found.problem


@pytest.mark.parametrize(
    "holder",
    [
        None,  # deleted
        rollout_body("trading", "fib-rsi", "u0"),  # deleted and recreated: another object
        rollout_body("trading", "fib-rsi", "u1", stable={"deployment": "elsewhere"}),  # no longer names it
    ],
)
def test_a_claim_whose_holder_is_gone_no_longer_holds(holder: dict[str, Any] | None) -> None:
    assert not tenancy.still_names(holder, "u1", "deployment", ("trading", "legacy"))


def test_a_live_holder_still_holds_what_its_spec_or_its_current_run_names() -> None:
    holder = rollout_body("trading", "fib-rsi", "u1")
    assert tenancy.still_names(holder, "u1", "deployment", ("trading", "legacy"))
    assert tenancy.still_names(holder, "u1", "configmap", ("trading", "fib-rsi-routing"))
    assert not tenancy.still_names(holder, "u1", "configmap", ("trading", "legacy"))
    holder["status"] = {"targets": [{"namespace": "old", "configMap": "fib-rsi-routing"}]}  # a run goes on there
    assert tenancy.still_names(holder, "u1", "deployment", ("old", "pipeline"))


# ---- routing ConfigMaps -------------------------------------------------------------------------


def test_owned_by_needs_exactly_that_uid_in_labels_and_references() -> None:
    owner = rollout_body("dev", "r", "u1")
    cm = {"metadata": {"labels": routing.owner_labels(owner)}}
    assert routing.owned_by(cm, owner)
    foreign_ref = reference("x", "u9")
    assert not routing.owned_by({"metadata": {**cm["metadata"], "ownerReferences": [foreign_ref]}}, owner)
    assert not routing.owned_by({"metadata": {"labels": {routing.LABEL: "true"}}}, owner)


def test_config_map_owners_are_its_owner_labels_and_its_rollout_references() -> None:
    owner = rollout_body("trading", "fib-rsi", "u1")
    labels = routing.owner_labels(owner)
    assert tenancy.config_map_owners(config_map("trading", "c", labels)) == [("trading", "fib-rsi", "u1")]
    refs = [reference("fib-rsi", "u1"), reference("b", "u2"), reference("keep", "k", kind="ConfigMap")]
    assert tenancy.config_map_owners(config_map("trading", "c", labels, refs)) == [
        ("trading", "fib-rsi", "u1"),
        ("trading", "b", "u2"),
    ]
    handed = {routing.OWNER_NAME: "fib-rsi"}  # made before the rollout, namespace implied
    assert tenancy.config_map_owners(config_map("trading", "c", handed)) == [("trading", "fib-rsi", PREPARED)]
    assert tenancy.config_map_owners(config_map("trading", "c", {routing.LABEL: "true"})) == []


def test_config_maps_of_nobody_are_refused_and_of_another_wait_for_it() -> None:
    nobody = config_map("trading", "r-routing", {})
    found = tenancy.judge_config_map(me(rollout_body("trading", "r", "u2")), "spec.routing.configMap", nobody)
    assert found.claim is None and found.problem is not None
    assert found.problem.startswith("spec.routing.configMap: configmap trading/r-routing exists and was not")
    first = rollout_body("trading", "fib-rsi", "u1", routing={"configMap": "shared"})
    shared = config_map("trading", "shared", routing.owner_labels(first))
    second = me(rollout_body("trading", "second", "u2", routing={"configMap": "shared"}))
    found = tenancy.judge_config_map(second, "spec.routing.configMap", shared)
    assert found.holders == [("trading", "fib-rsi", "u1")]
    assert tenancy.claimed("spec.routing.configMap", "configmap", ("trading", "shared"), found.holders[0]) == (
        "spec.routing.configMap: configmap trading/shared is claimed by strategyrollout trading/fib-rsi"
    )
    assert tenancy.judge_config_map(me(first), "f", shared) == Found()  # created for it: nothing to write


def test_a_config_map_handed_to_a_rollout_by_name_is_that_rollouts_alone() -> None:
    handed = config_map("trading", "shared", {routing.OWNER_NAMESPACE: "trading", routing.OWNER_NAME: "fib-rsi"})
    other = me(rollout_body("trading", "other", "u2", routing={"configMap": "shared"}))
    assert tenancy.judge_config_map(other, "spec.routing.configMap", handed).holders == [("trading", "fib-rsi", "")]
    mine = me(rollout_body("trading", "fib-rsi", "u1", routing={"configMap": "shared"}))
    assert tenancy.judge_config_map(mine, "spec.routing.configMap", handed) == Found(claim=handed)
    written = tenancy.taken_over(mine, handed, reference("fib-rsi", "u1"))
    assert written["metadata"]["labels"] == routing.owner_labels(rollout_body("trading", "fib-rsi", "u1"))
    assert [r["uid"] for r in written["metadata"]["ownerReferences"]] == ["u1"]


def test_a_config_map_of_a_gone_rollout_is_taken_over_with_labels_and_reference() -> None:
    gone = rollout_body("trading", "r", "u0")
    refs = [reference("r", "u0"), reference("keep", "k", kind="Something")]
    cm = config_map("trading", "r-routing", routing.owner_labels(gone), refs)
    m = me(rollout_body("trading", "r", "u1"))
    assert tenancy.judge_config_map(m, "f", cm) == Found(claim=cm)  # u0: an earlier r, gone
    mine = reference("r", "u1")
    written = tenancy.taken_over(m, cm, mine)
    assert written["metadata"]["resourceVersion"] == "9"  # the precondition: as judged
    assert written["metadata"]["labels"] == routing.owner_labels(rollout_body("trading", "r", "u1"))
    assert [r["uid"] for r in written["metadata"]["ownerReferences"]] == ["k", "u1"]
    assert written["data"] == cm["data"]
    # In a stage namespace (no reference across namespaces): labels only, other references kept.
    cross = tenancy.taken_over(Me("dev", "r", "u1", rollout_body("dev", "r", "u1")), cm, None)
    assert [r["uid"] for r in cross["metadata"]["ownerReferences"]] == ["k"]
    assert cross["metadata"]["labels"][routing.OWNER_NAMESPACE] == "dev"


# ---- deleting a rollout -------------------------------------------------------------------------


def test_deleting_a_rollout_removes_only_what_was_created_for_it_alone() -> None:
    owner = rollout_body("dev", "r", "u1")
    mine = config_map("prod", "mine", routing.owner_labels(owner))
    shared = config_map("prod", "shared", routing.owner_labels(owner), [reference("fib-rsi", "u9")])
    referenced = config_map("dev", "ref", {}, [reference("r", "u1")])
    other = config_map("prod", "other", routing.owner_labels(rollout_body("prod", "fib-rsi", "u9")))
    assert orphans.removed_with(mine, "u1")
    assert not orphans.removed_with(shared, "u1") and not orphans.removed_with(shared, "u9")
    assert not orphans.removed_with(other, "u1")
    assert not orphans.removed_with(config_map("prod", "made-by-hand", {}), "u1")
    assert orphans.removed_with(referenced, "u1")  # (the garbage collector removes it anyway)


def test_the_sweep_removes_only_what_was_created_for_one_rollout_that_is_gone() -> None:
    owner = rollout_body("dev", "r", "u1")
    mine = config_map("prod", "mine", routing.owner_labels(owner))
    assert not orphans.orphaned(mine, owner)  # its rollout exists
    assert orphans.orphaned(mine, None)  # deleted
    assert orphans.orphaned(mine, rollout_body("dev", "r", "u2"))  # deleted and made again
    shared = config_map("prod", "shared", routing.owner_labels(owner), [reference("fib-rsi", "u9")])
    assert not orphans.orphaned(shared, None)  # names another owner too: not the sweep's to judge
    assert not orphans.orphaned(config_map("prod", "handed", {routing.OWNER_NAME: "r"}), None)  # no uid
