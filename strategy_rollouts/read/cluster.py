"""The cluster as the CLI and the dashboard read it: kubeconfig loading, custom objects, ConfigMaps, who am I.

Sync `kubernetes` client (a CLI has nothing to overlap; the dashboard calls it through `asyncio.to_thread`);
every API error becomes a one-line ClusterError (the CLI prints it and exits 1, the dashboard answers 502).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from strategy_rollouts.api.common import GROUP, VERSION

T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 15.0  # seconds per API request
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

# kind -> (plural, singular shown in messages)
KINDS = {
    "StrategyRollout": ("strategyrollouts", "strategyrollout"),
    "ShadowRun": ("shadowruns", "shadowrun"),
    "ParityCheck": ("paritychecks", "paritycheck"),
}


@dataclass(frozen=True)
class Target:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


class ClusterError(Exception):
    """A failed cluster read or write, as one line naming the object or the cause (never a traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ClusterError):
    pass


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"


class Cluster:
    """One API connection; `namespace` is the -n flag, else the context's namespace, else `default`."""

    def __init__(self, target: Target) -> None:
        self.namespace = target.namespace or "default"
        try:
            contexts, current = config.list_kube_config_contexts(config_file=target.kubeconfig)
            chosen = next((c for c in contexts if c["name"] == target.context), None) if target.context else None
            if target.context and chosen is None:
                raise ClusterError(f"context {target.context!r} not found in kubeconfig")
            ctx = (chosen or current or {}).get("context") or {}
            self.namespace = target.namespace or ctx.get("namespace") or "default"
            cfg = client.Configuration()
            config.load_kube_config(config_file=target.kubeconfig, context=target.context, client_configuration=cfg)
        except ConfigException as exc:
            try:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
            except ConfigException:
                raise ClusterError(f"no Kubernetes configuration: {exc}") from None
            sa_namespace = Path(SERVICE_ACCOUNT_NAMESPACE)
            if not target.namespace and sa_namespace.is_file():
                self.namespace = sa_namespace.read_text().strip() or "default"
        cfg.retries = 1
        self.server = str(cfg.host)
        self.api = client.ApiClient(cfg)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.auth = client.AuthenticationV1Api(self.api)

    def close(self) -> None:
        """Close the pooled TLS connections (an in-process caller, e.g. a test, would otherwise leave them
        to the garbage collector: a ResourceWarning wherever that happens)."""
        self.api.close()

    @contextmanager
    def _errors(self, what: str = "") -> Iterator[None]:
        try:
            yield
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{what} not found" if what else _api_message(exc)) from None
            if exc.status in (401, 403):
                raise ClusterError(
                    f"{'forbidden' if exc.status == 403 else 'unauthorized'}: {_api_message(exc)}"
                ) from None
            raise ClusterError(f"API error ({exc.status}): {_api_message(exc)}") from None
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(f"cannot reach the Kubernetes API at {self.server}: {reason}") from None

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._errors(what):
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)

    # ---- custom objects ------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        plural, singular = KINDS[kind]
        ns = namespace or self.namespace
        obj = self.call(
            f"{singular} {ns}/{name}", self.custom.get_namespaced_custom_object, GROUP, VERSION, ns, plural, name
        )
        return cast(dict[str, Any], obj)

    def list_all(self, kind: str, all_namespaces: bool = False) -> list[dict[str, Any]]:
        plural, _ = KINDS[kind]
        if all_namespaces:
            res = self.call("", self.custom.list_cluster_custom_object, GROUP, VERSION, plural)
        else:
            res = self.call("", self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, plural)
        items = cast(dict[str, Any], res).get("items") or []
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def objects(self, kind: str, name: str | None, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """`get [NAME] [-A]`: the named object, or every one in the namespace (or cluster)."""
        return [self.get(kind, name)] if name else self.list_all(kind, all_namespaces)

    def nothing_found(self, kind: str, all_namespaces: bool) -> str:
        where = "any namespace" if all_namespaces else f"namespace {self.namespace}"
        return f"No {KINDS[kind][0]} found in {where}."

    def patch_status(self, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch on the status subresource (Argo CD never sees a spec diff)."""
        plural, singular = KINDS[kind]
        obj = self.call(
            f"{singular} {self.namespace}/{name}",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            self.namespace,
            plural,
            name,
            patch,
            _content_type=MERGE_PATCH,
        )
        return cast(dict[str, Any], obj)

    # ---- ConfigMaps ----------------------------------------------------------------------------
    def config_map(self, name: str) -> dict[str, str] | None:
        """The ConfigMap's data ({} when empty), or None when it does not exist."""
        try:
            cm = self.call("", self.core.read_namespaced_config_map, name, self.namespace)
        except NotFound:
            return None
        return dict(cm.data or {})

    def merge_config_map(self, name: str, data: dict[str, str], create: bool) -> None:
        what = f"configmap {self.namespace}/{name}"
        if create:
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
            self.call(what, self.core.create_namespaced_config_map, self.namespace, body)
        else:
            self.call(
                what,
                self.core.patch_namespaced_config_map,
                name,
                self.namespace,
                {"data": data},
                _content_type=MERGE_PATCH,
            )

    # ---- identity ------------------------------------------------------------------------------
    def who_am_i(self) -> str | None:
        """The user name from SelfSubjectReview; None when the server does not offer it."""
        try:
            review = self.auth.create_self_subject_review(client.V1SelfSubjectReview(), _request_timeout=TIMEOUT)
        except ApiException:
            return None  # very old server, or SelfSubjectReview disabled: the operator records no one
        except urllib3.exceptions.HTTPError:
            with self._errors():
                raise
        info = review.status.user_info if review.status else None
        return info.username if info else None

    def user_name(self) -> str:
        """Who writes a request: the API server's admission policy refuses any other `by`."""
        name = self.who_am_i()
        if not name:
            raise ClusterError(
                "cannot tell who you are: the API server did not answer SelfSubjectReview (Kubernetes >= 1.28)"
            )
        return name
