"""Webhook gates over HTTP (aiohttp, already kopf's client: nothing blocks the event loop).

2xx = Pass; any other status is a rejection (the engine holds or fails per `onReject`), with the
status code as the message (never the body: nothing a remote says is echoed into status);
timeout, refused connection, TLS or protocol error =
Inconclusive. TLS is verified (system CAs, or the PEM bundle of `caSecretRef`). Redirects are not
followed (the bearer token goes to the URL in the spec and nowhere else). Credentials come from
labelled Secrets only and never appear in status, Events or logs.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.operator.clients.credentials import CredentialsError
from strategy_rollouts.operator.context import Context


@dataclass(frozen=True)
class Auth:
    token: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)


async def credentials(
    ctx: Context, namespace: str, field_name: str, gates: list[GateSpec]
) -> tuple[dict[str, Auth], list[str]]:
    """Each webhook gate's token and CA, or field-named errors (InvalidSpec: the rollout does not act)."""
    found: dict[str, Auth] = {}
    errors: list[str] = []
    for i, gate in enumerate(gates):
        hook = gate.webhook
        if hook is None:
            continue
        values: dict[str, str | None] = {"token": None, "ca": None}
        refs = (
            ("token", hook.bearer_token_secret_ref, "bearerTokenSecretRef"),
            ("ca", hook.ca_secret_ref, "caSecretRef"),
        )
        for key, ref, name in refs:
            if ref is None:
                continue
            try:
                values[key] = await ctx.secret(namespace, ref)
            except CredentialsError as exc:
                errors.append(f"{field_name}[{i}].webhook.{name}: {exc}")
        found[gate.name] = Auth(values["token"].strip() if values["token"] else None, values["ca"])
    return found, errors


def _ssl(auth: Auth) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cadata=auth.ca_pem) if auth.ca_pem else True


async def ask(gate: GateSpec, body: Mapping[str, Any], auth: Auth) -> Measurement:
    hook = gate.webhook
    assert hook is not None
    seconds = parse_duration(hook.timeout).total_seconds()
    headers = {"Authorization": f"Bearer {auth.token}"} if auth.token else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.post(hook.url, json=dict(body), headers=headers, ssl=_ssl(auth), allow_redirects=False) as response,
        ):
            # The status code and our own words only: a remote's body is never echoed into status.
            return Measurement(float(response.status), message=f"webhook {hook.url} answered HTTP {response.status}")
    except TimeoutError:
        return _unknown(f"webhook {hook.url} timed out after {hook.timeout}")
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        return _unknown(f"webhook {hook.url}: TLS error ({type(exc).__name__})")
    except aiohttp.ClientConnectorError:
        return _unknown(f"webhook {hook.url} unreachable")
    except (aiohttp.ClientError, asyncio.IncompleteReadError, ValueError) as exc:
        return _unknown(f"webhook {hook.url}: {type(exc).__name__}")


def _unknown(message: str) -> Measurement:
    return Measurement(None, outcome="inconclusive", message=message)
