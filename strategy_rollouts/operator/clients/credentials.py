"""Credentials a spec names: Secrets labelled as credentials, read at use and never logged or stored,
and the Prometheus connection built from them (API.md "Credentials and trust")."""

from __future__ import annotations

import base64
import os
import tempfile

from kubernetes.client.exceptions import ApiException

from strategy_rollouts.api.common import PrometheusConnection, SecretKeyRef
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.operator.clients.kube import Kube
from strategy_rollouts.read.prometheus import Connection, Pool

CREDENTIALS_LABEL = "strategyrollouts.io/credentials"


class CredentialsError(Exception):
    """A Secret named in a spec is missing, lacks the key, or is not labelled as credentials."""


async def read_secret(kube: Kube, namespace: str, ref: SecretKeyRef) -> str:
    """One key of a Secret labelled as credentials; anything else raises CredentialsError naming it.

    Only labelled Secrets are read (API.md "Credentials and trust"), so a spec cannot make the
    operator disclose an arbitrary Secret of the namespace to a URL its author chose.
    """
    try:
        secret = await kube.maybe(kube.core.read_namespaced_secret, ref.name, namespace)
    except ApiException as exc:
        if exc.status != 403:
            raise
        # The chart grants Secrets per namespace (values rbac.secretNamespaces), never cluster-wide by default.
        raise CredentialsError(
            f"Secret {namespace}/{ref.name}: the operator may not read Secrets in namespace {namespace} "
            "(grant it: the chart's rbac.secretNamespaces)"
        ) from None
    if secret is None:
        raise CredentialsError(f"Secret {namespace}/{ref.name} not found")
    labels = (secret.metadata.labels if secret.metadata is not None else None) or {}
    if labels.get(CREDENTIALS_LABEL) != "true":
        raise CredentialsError(f'Secret {namespace}/{ref.name} lacks the label {CREDENTIALS_LABEL}: "true"')
    data = secret.data or {}
    if ref.key not in data:
        raise CredentialsError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
    return base64.b64decode(data[ref.key]).decode()


async def optional_secret(kube: Kube, namespace: str, ref: SecretKeyRef | None) -> str | None:
    """None when absent or unreadable (the spec check reports it as InvalidSpec before any use)."""
    if ref is None:
        return None
    try:
        return await read_secret(kube, namespace, ref)
    except CredentialsError:
        return None


class CaFiles:
    """CA bundles go to a temp file (requests wants a path); the root filesystem may be read-only."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}  # PEM -> temp file path

    def path(self, pem: str) -> str:
        if pem not in self.paths:
            fd, path = tempfile.mkstemp(prefix="prometheus-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as handle:
                handle.write(pem)
            self.paths[pem] = path
        return self.paths[pem]


async def prometheus_connection(
    kube: Kube,
    pool: Pool,
    ca_files: CaFiles,
    default_url: str,
    default_timeout_s: float,
    namespace: str,
    override: PrometheusConnection | None,
) -> Connection:
    """The operator default, overridden per object; secrets read at use, never logged or stored."""
    if override is None:
        return Connection(default_url, default_timeout_s, pool=pool)
    token = await optional_secret(kube, namespace, override.bearer_token_secret_ref)
    ca = await optional_secret(kube, namespace, override.ca_secret_ref)
    return Connection(
        address=override.address or default_url,
        timeout_s=parse_duration(override.timeout).total_seconds(),
        bearer_token=token.strip() if token else None,
        ca_file=ca_files.path(ca) if ca else None,
        insecure_skip_verify=override.insecure_skip_verify,
        pool=pool,
    )
