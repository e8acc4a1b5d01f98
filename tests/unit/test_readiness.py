"""/readyz: not Ready before kopf's startup ran, nor while the admission webhook does not accept connections."""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from strategy_rollouts.operator.runtime import readiness
from strategy_rollouts.operator.runtime.leader import Leadership


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, await resp.text()


async def test_ready_only_once_started_and_the_webhook_listens() -> None:
    leadership, port, hook = Leadership(), free_port(), free_port()
    runner = await readiness.serve(leadership, port, "127.0.0.1", webhook=("127.0.0.1", hook))
    try:
        assert await get(port) == (503, "starting\n")
        leadership.started = True
        assert await get(port) == (503, "admission webhook not serving yet\n")
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", hook)
        async with server:
            status, body = await get(port)
            assert status == 200 and body.strip() in ("leader", "standby")
        assert (await get(port))[0] == 503  # it stopped listening: not Ready again
    finally:
        await runner.cleanup()


async def test_without_a_webhook_started_is_ready() -> None:
    leadership, port = Leadership(), free_port()
    leadership.started = True
    runner = await readiness.serve(leadership, port, "127.0.0.1")
    try:
        assert (await get(port))[0] == 200
    finally:
        await runner.cleanup()
