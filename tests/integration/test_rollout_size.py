"""Size by design on the real API server (engine/size.py; docs/safety.md "Size by design").

At the most keys validation accepts, the status the engine writes for an abort (every key of every
stage namespace draining at once) is written through the status subresource as the operator writes it
(a PUT guarded by the resourceVersion) and accepted, with the object applied by client-side
`kubectl apply` (its last-applied copy of the spec is stored too); so is the largest routing.json.
Without the budget the abort's write is refused by etcd: that is the finding these budgets close.
One key beyond the maxima is refused at apply: tests/integration/test_admission_webhook.py (the
webhook) and test_rollout_invalid.py (InvalidSpec without it).

The namespace is outside the session operator's pattern: nothing but this test writes these objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from kubernetes import client, config
from kubernetes.client import ApiException

from strategy_rollouts.api.common import GROUP, VERSION
from strategy_rollouts.engine.routing import DRAINING
from strategy_rollouts.engine.size import (
    ETCD_REQUEST_LIMIT,
    ROUTING_JSON_BUDGET,
    STATUS_BUDGET,
    segmented,
    size_errors,
)
from tests.unit.size_sim import key_names, measure, most_keys, sized_spec, wire_bytes

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

PLURAL = "strategyrollouts"


@pytest.fixture
def quiet_namespace(cluster: DevCluster, crds: None) -> Iterator[str]:
    ns = f"size{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", ns)
    try:
        yield ns
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def api(cluster: DevCluster) -> Iterator[client.CustomObjectsApi]:
    api_client = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield client.CustomObjectsApi(api_client)
    finally:
        api_client.close()


def manifest(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def write_status(api: client.CustomObjectsApi, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """What the operator does (operator/clients/kube.py patch_status): PUT the status subresource with
    the resourceVersion it read."""
    current = read(api, namespace, name)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": current["metadata"]["resourceVersion"]},
        "status": status,
    }
    result = api.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)
    return cast(dict[str, Any], result)


def read(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


@pytest.mark.parametrize(
    ("namespaces", "key_length", "version_length"),
    [(4, 10, 6), (16, 8, 8), (1, 128, 128)],
    ids=["4-namespaces", "16-namespaces", "longest-keys"],
)
def test_the_abort_status_at_the_maxima_is_accepted(
    cluster: DevCluster,
    quiet_namespace: str,
    api: client.CustomObjectsApi,
    namespaces: int,
    key_length: int,
    version_length: int,
) -> None:
    ns = quiet_namespace
    keys = most_keys(namespaces, key_length, version_length)
    spec = sized_spec(keys, namespaces, key_length, version_length)
    sizes = measure(spec, "abort")
    assert sizes.status_phase == "RolledBack/Aborted" and sizes.status <= STATUS_BUDGET
    pending = sum(len(t["pending"]) for t in sizes.largest["targets"])
    assert pending == keys * namespaces, "every key of every namespace draining in the written status"
    name = f"max-{namespaces}"
    # Client-side apply: the object also carries kubectl's last-applied copy of the spec.
    obj = manifest(name, ns, spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    written = write_status(api, ns, name, sizes.largest)
    assert written["status"]["phase"] == "RolledBack" and written["status"]["reason"] == "Aborted"
    stored = read(api, ns, name)
    assert stored["status"]["targets"] == sizes.largest["targets"], "stored as written, nothing pruned"
    whole = wire_bytes(stored)  # with metadata.managedFields and the last-applied annotation
    assert whole < ETCD_REQUEST_LIMIT // 2, f"{whole:,} bytes"
    print(f"{keys} keys x {namespaces} namespaces: status {sizes.status:,} B, whole object {whole:,} B")
    # The largest routing.json of the same run, in a routing ConfigMap.
    core = client.CoreV1Api(api.api_client)
    text = json.dumps(sizes.largest_routing, sort_keys=True, separators=(",", ":"))
    assert len(text) <= ROUTING_JSON_BUDGET
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"{name}-routing"), data={"routing.json": text})
    core.create_namespaced_config_map(ns, body)
    got = core.read_namespaced_config_map(f"{name}-routing", ns)
    assert json.loads((got.data or {})["routing.json"]) == sizes.largest_routing


def test_without_the_budget_the_abort_write_is_refused(
    cluster: DevCluster, quiet_namespace: str, api: client.CustomObjectsApi
) -> None:
    """The finding: 5,000 keys of 28 characters across 4 stage namespaces, which the engine now records as
    segments of their hash order (engine/size.py `segmented`). Written key by key, the abort's status (every
    key draining: the shape the engine wrote before; 1.64 MB) does not fit in etcd."""
    ns = quiet_namespace
    spec = sized_spec(5000, 4, 28, 6)
    assert segmented(spec) and size_errors(spec) == []
    obj = manifest("beyond", ns, spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    keys = key_names(5000, 28)
    stable = spec.stable.version
    status = {
        "phase": "RolledBack",
        "reason": "Aborted",
        "targets": [
            {
                "namespace": f"ns-{i}",
                "configMap": "beyond-routing",
                "assignments": dict.fromkeys(keys, DRAINING),
                "pending": dict.fromkeys(keys, stable),
                "drainingUntil": "2026-01-05T06:00:05Z",
            }
            for i in range(4)
        ],
    }
    assert wire_bytes(status) > ETCD_REQUEST_LIMIT
    with pytest.raises(ApiException) as refused:
        write_status(api, ns, "beyond", status)
    assert "etcdserver: request is too large" in str(refused.value.body), refused.value.body
