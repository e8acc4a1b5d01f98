"""`/readyz` on --readiness-port: 503 until kopf's startup ran, then 200 with `leader` or `standby`.

A standby is Ready (Kubernetes' convention for HA controllers): it serves the admission webhook and
keeps its caches warm; the body and the `strategy_rollouts_leader` metric say which replica acts.
Liveness stays kopf's own `/healthz` (--liveness-port), served by every replica.
"""

from __future__ import annotations

from aiohttp import web

from strategy_rollouts.operator.leader import Leadership


async def serve(leadership: Leadership, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    async def readyz(_: web.Request) -> web.Response:
        if not leadership.started:
            return web.Response(status=503, text="starting\n")
        return web.Response(text=f"{leadership.role()}\n")

    app = web.Application()
    app.add_routes([web.get("/readyz", readyz)])
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
