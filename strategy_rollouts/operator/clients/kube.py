"""Kubernetes adapter: one shared ApiClient, sync calls off the event loop with bounded concurrency.

Fencing (docs/high-availability.md): every request carries a timeout (`_request_timeout`; writes a
shorter one, below the leader's renew deadline), the transport never retries a request (a write
retried on a new connection would leave after its timeout, unfenced), and every write that changes
the world is conditional: a replace carries the resourceVersion it was read with, a delete its
preconditions, a create fails if the object exists. A write the API server did not answer in time
raises Unanswered; one refused because the object changed raises Conflict.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from strategy_rollouts.api.common import GROUP, VERSION

T = TypeVar("T")
KINDS = {"strategyrollouts": "StrategyRollout", "shadowruns": "ShadowRun", "paritychecks": "ParityCheck"}
WRITE_CALLS = ("create_", "replace_", "patch_", "delete_")  # generated client methods that change the world
# Request timeouts (seconds, connect + answer). With --leader-elect the write timeout becomes
# Timing.request_timeout_s (min(renew deadline / 2, lease - renew deadline)); these are the defaults.
WRITE_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
POOL_SIZE = 32  # pooled connections = calls in flight


@dataclass(frozen=True)
class DeploymentInfo:
    replicas: int
    ready: int
    env: dict[str, str]  # the pod template's env, all containers (for isolation checks)
    generation: int
    observed_generation: int
    resource_version: str | None = None


class Conflict(Exception):
    """409: the object changed since we read it; the caller retries at once from a fresh read."""


class Rejected(Exception):
    """422: the API server refused what we wrote as invalid. Retrying at once would only repeat it, so
    the caller logs the server's message, posts a Warning Event and backs off."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(f"{what}: {message}")
        self.what = what
        self.message = message


class Unanswered(Exception):
    """No answer from the API server within the request timeout, or no connection. A write may or may
    not have landed; nothing re-sends it (the transport does not retry): the caller's loop backs off and
    its next pass re-reads. Every write is conditional, so a late landing never overwrites a newer write."""


def server_message(exc: ApiException) -> str:
    """The Status message the API server sent (names the field for a 422), else the reason."""
    body = parse_json(exc.body if isinstance(exc.body, str) else None) or {}
    return str(body.get("message") or exc.reason or exc.status)


def classify(exc: ApiException, what: str) -> Exception:
    """409 -> Conflict, 422 -> Rejected, anything else unchanged."""
    if exc.status == 409:
        return Conflict(f"{what} changed concurrently")
    if exc.status == 422:
        return Rejected(what, server_message(exc))
    return exc


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or client.ApiClient(configured(client.Configuration.get_default_copy()))
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        self.auth = client.AuthenticationV1Api(self.api)
        self.limit = asyncio.Semaphore(POOL_SIZE)  # as many calls in flight as pooled connections
        # Leader election's fence (leader.Leadership.check): raises unless this replica may act.
        self.fence: Callable[[], None] | None = None
        self.write_timeout_s = WRITE_TIMEOUT_S
        self.read_timeout_s = READ_TIMEOUT_S

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Kube:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config(config_file=kubeconfig)
        return cls(client.ApiClient(configured(client.Configuration.get_default_copy())))

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a generated client call in a worker thread, with its request timeout; a write passes the
        fence first. A timeout or a broken connection raises Unanswered."""
        write = writes(fn)
        kwargs.setdefault("_request_timeout", self.write_timeout_s if write else self.read_timeout_s)
        async with self.limit:
            try:
                if self.fence is not None and write:
                    return await asyncio.to_thread(self._fenced, self.fence, fn, *args, **kwargs)
                return await asyncio.to_thread(fn, *args, **kwargs)
            except urllib3.exceptions.HTTPError as exc:
                what = getattr(fn, "__name__", "a request")
                raise Unanswered(f"{what}: no answer within {kwargs['_request_timeout']}s ({exc})") from exc

    @staticmethod
    def _fenced(fence: Callable[[], None], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """In the worker thread, right before the request: a process frozen since it was queued checks
        again. From here the request has its timeout and a single attempt on the wire."""
        fence()
        return fn(*args, **kwargs)

    async def maybe(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Like call, but a 404 is None."""
        try:
            return await self.call(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # ---- deployments ---------------------------------------------------------------------
    async def deployment(self, namespace: str, name: str) -> DeploymentInfo | None:
        dep = await self.maybe(self.apps.read_namespaced_deployment, name, namespace)
        if dep is None:
            return None
        env: dict[str, str] = {}
        for container in dep.spec.template.spec.containers or []:
            for var in container.env or []:
                if var.value is not None:
                    env[var.name] = var.value
        status = dep.status
        return DeploymentInfo(
            replicas=dep.spec.replicas if dep.spec.replicas is not None else 1,
            ready=(status.ready_replicas or 0) if status else 0,
            env=env,
            generation=dep.metadata.generation or 0,
            observed_generation=(status.observed_generation or 0) if status else 0,
            resource_version=dep.metadata.resource_version,
        )

    async def scale(self, namespace: str, name: str, replicas: int, resource_version: str | None) -> str | None:
        """Set spec.replicas, only if the Deployment is still at `resource_version` (409 Conflict otherwise);
        returns its new resourceVersion.

        A PUT of the scale subresource: the API server copies the Scale's resourceVersion into the
        Deployment's update, so a stale one is a real 409 (a JSON patch `test` would be a 422, and a
        merge patch without a version is unconditional). The scale subresource shares the Deployment's
        resourceVersion, so the one a watch delivered works. None: read the scale first (the fence
        check of the write still comes after that read)."""
        what = f"deployment {namespace}/{name} scale"
        try:
            if resource_version is None:
                current = await self.call(self.apps.read_namespaced_deployment_scale, name, namespace)
                resource_version = current.metadata.resource_version
            body = client.V1Scale(
                api_version="autoscaling/v1",
                kind="Scale",
                metadata=client.V1ObjectMeta(name=name, namespace=namespace, resource_version=resource_version),
                spec=client.V1ScaleSpec(replicas=replicas),
            )
            result = await self.call(self.apps.replace_namespaced_deployment_scale, name, namespace, body)
        except ApiException as exc:
            raise classify(exc, what) from exc
        meta = getattr(result, "metadata", None)
        return getattr(meta, "resource_version", None)

    async def deployment_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment as a plain body (the shape its watch delivers), None when absent."""
        dep = await self.maybe(self.apps.read_namespaced_deployment, name, namespace)
        return None if dep is None else self.body(dep)

    async def annotate_deployment(
        self, namespace: str, name: str, annotations: dict[str, str], resource_version: str
    ) -> dict[str, Any]:
        """Set annotations on a Deployment only if nobody wrote it since `resource_version` (else Conflict).

        A merge patch carrying metadata.resourceVersion is the API server's precondition: a 409 when the
        object changed. Only metadata is sent: the pod template (and so the pods) is untouched."""
        patch = {"metadata": {"resourceVersion": resource_version, "annotations": annotations}}
        try:
            written = await self.call(
                self.apps.patch_namespaced_deployment,
                name,
                namespace,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise classify(exc, f"deployment {namespace}/{name}") from exc
        return self.body(written)

    # ---- namespaces --------------------------------------------------------------------------
    async def namespace_annotations(self, name: str) -> dict[str, str] | None:
        """The Namespace's annotations, None when it does not exist."""
        ns = await self.maybe(self.core.read_namespace, name)
        if ns is None:
            return None
        return dict((ns.metadata.annotations if ns.metadata else None) or {})

    # ---- config maps -----------------------------------------------------------------------
    async def config_map(self, namespace: str, name: str) -> client.V1ConfigMap | None:
        return await self.maybe(self.core.read_namespaced_config_map, name, namespace)

    async def write_config_map(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        labels: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None,
        resource_version: str | None = None,
    ) -> client.V1ConfigMap:
        """Create, or replace guarded by resourceVersion (a concurrent writer raises Conflict)."""
        meta = client.V1ObjectMeta(name=name, namespace=namespace, labels=labels or {})
        if owner is not None:
            meta.owner_references = [owner_reference(owner)]
        body = client.V1ConfigMap(metadata=meta, data=data)
        try:
            if resource_version is None:
                return await self.call(self.core.create_namespaced_config_map, namespace, body)
            meta.resource_version = resource_version
            return await self.call(self.core.replace_namespaced_config_map, name, namespace, body)
        except ApiException as exc:
            raise classify(exc, f"configmap {namespace}/{name}") from exc

    async def config_map_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap as a plain body (the shape its watch delivers), None when absent."""
        cm = await self.config_map(namespace, name)
        return None if cm is None else self.body(cm)

    def body(self, model: object) -> dict[str, Any]:
        """A client model as the API server's JSON (camelCase keys), the shape watch events carry."""
        serialised: dict[str, Any] = self.api.sanitize_for_serialization(model)
        return serialised

    async def replace_config_map(self, body: dict[str, Any]) -> client.V1ConfigMap:
        """Replace guarded by the resourceVersion it was read with (kept in `body`'s metadata)."""
        meta = body["metadata"]
        if not meta.get("resourceVersion"):
            raise ValueError(f"configmap {meta['namespace']}/{meta['name']}: an unconditional replace")
        try:
            return await self.call(self.core.replace_namespaced_config_map, meta["name"], meta["namespace"], body)
        except ApiException as exc:
            raise classify(exc, f"configmap {meta['namespace']}/{meta['name']}") from exc

    # ---- our custom resources --------------------------------------------------------------
    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        found: object = await self.maybe(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
        )
        return found if isinstance(found, dict) else None

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Replace the whole status, only if nobody wrote the object since we read it.

        A PUT of the status subresource carrying the resourceVersion: a concurrent writer is a real
        409 (a JSON patch `test` fails with 422, which cannot be told apart from an invalid status).
        """
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KINDS[plural],
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "status": status,
        }
        try:
            result: object = await self.call(
                self.custom.replace_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
            )
            return result if isinstance(result, dict) else {}
        except ApiException as exc:
            raise classify(exc, f"{plural} {namespace}/{name} status") from exc

    async def merge_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch of the status subresource; returns the object as written. With `uid`, only
        that incarnation of the object is patched (a recreated one with the same name is refused). With
        `resource_version`, only if nobody wrote the object since (a merge patch carrying
        metadata.resourceVersion is a precondition the API server checks: 409 Conflict otherwise)."""
        body: dict[str, Any] = {"status": patch}
        meta = {"uid": uid, "resourceVersion": resource_version}
        if any(meta.values()):
            body["metadata"] = {k: v for k, v in meta.items() if v is not None}
        try:
            result: object = await self.call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body,
            )
        except ApiException as exc:
            raise classify(exc, f"{plural} {namespace}/{name} status") from exc
        return result if isinstance(result, dict) else {}

    async def delete(
        self, fn: Callable[..., Any], namespace: str, name: str, resource_version: str | None, uid: str | None = None
    ) -> bool:
        """Delete only the object as read (its resourceVersion, and uid when given, as preconditions:
        409 Conflict if it changed since). False when it is already gone."""
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=resource_version, uid=uid)
        )
        try:
            await self.call(fn, name, namespace, body=options)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise classify(exc, f"{namespace}/{name}") from exc
        return True

    async def who_am_i(self) -> str:
        """The caller's user name from SelfSubjectReview (authentication.k8s.io/v1). Raises on any failure:
        a name the admission policy does not know would get every request this operator sends refused."""
        review = await self.call(
            self.auth.create_self_subject_review,
            client.V1SelfSubjectReview(metadata=client.V1ObjectMeta()),
        )
        name = review.status.user_info.username if review.status and review.status.user_info else None
        if not name:
            raise ApiException(status=0, reason="SelfSubjectReview answered no user name")
        return str(name)


def configured(configuration: client.Configuration) -> client.Configuration:
    """The operator's transport: a request is sent once. urllib3's default retries a timed-out PUT or
    DELETE, and any method whose connection failed, on a new connection: a write would leave again
    after its timeout, unfenced. The loops are the retry (each pass re-reads and re-checks the fence)."""
    configuration.retries = False
    # One pooled connection per concurrent call (the default pool is cpus * 5).
    configuration.connection_pool_maxsize = POOL_SIZE
    return configuration


def writes(fn: Callable[..., Any]) -> bool:
    """A generated client call that changes an object (reviews are create_* calls that only read)."""
    name = getattr(fn, "__name__", "")
    return name.startswith(WRITE_CALLS) and not name.endswith("_review")


def owner_reference(obj: dict[str, Any]) -> client.V1OwnerReference:
    return client.V1OwnerReference(
        api_version=obj["apiVersion"],
        kind=obj["kind"],
        name=obj["metadata"]["name"],
        uid=obj["metadata"]["uid"],
        controller=True,
        block_owner_deletion=False,
    )


def parse_json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
