"""`/readyz` on --readiness-port: 503 until kopf's startup ran (and, with --admission-webhook, until its
server accepts connections), then 200 with `leader` or `standby`.

A standby is Ready (Kubernetes' convention for HA controllers): it serves the admission webhook and
keeps its caches warm; the body and the `strategy_rollouts_leader` metric say which replica acts.
Liveness stays kopf's own `/healthz` (--liveness-port), served by every replica. A pod whose webhook
is not listening yet must not be Ready: the Service would send admission requests to it, and with
`failurePolicy: Ignore` a bad spec would be admitted unchecked (seen at every rollout of the operator).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from strategy_rollouts.operator.runtime.leader import Leadership


async def listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port (the webhook's TLS server, here)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def serve(
    leadership: Leadership, port: int, host: str = "0.0.0.0", webhook: tuple[str, int] | None = None
) -> web.AppRunner:
    """`webhook`: (address, port) of the admission server that must accept connections before Ready."""

    async def readyz(_: web.Request) -> web.Response:
        if not leadership.started:
            return web.Response(status=503, text="starting\n")
        if webhook is not None and not await listening(*webhook):
            return web.Response(status=503, text="admission webhook not serving yet\n")
        return web.Response(text=f"{leadership.role()}\n")

    app = web.Application()
    app.add_routes([web.get("/readyz", readyz)])
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
