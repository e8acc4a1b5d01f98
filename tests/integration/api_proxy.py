"""A TLS-terminating proxy in front of the real API server that fails chosen requests, for one client.

The API server cannot be made to refuse one kind of request on its own (APF still dispatches a
SelfSubjectReview on a priority level without seats, and admission never sees one), so a client is pointed
at this proxy instead: it answers the first `fail` requests whose path ends with a given suffix with a 503
(a Kubernetes Status, as an overloaded API server does) and forwards everything else, watches included
(streamed chunk by chunk), to the real API server with the kubeconfig's own credentials. The client's
identity is therefore the kubeconfig's user, exactly as without the proxy.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientPayloadError, ClientSession, ClientTimeout, TCPConnector, web
from kubernetes import client, config

from tests.integration.workloads import self_signed

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


class ApiProxy:
    """`with ApiProxy(kubeconfig, tmp, {"/selfsubjectreviews": 1}) as proxy:` then use `proxy.kubeconfig`."""

    def __init__(self, kubeconfig: Path, tmp: Path, fail: dict[str, int]) -> None:
        self.upstream = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=self.upstream)  # type: ignore[no-untyped-call]
        self.source = kubeconfig
        self.tmp = tmp
        self.left = dict(fail)  # path suffix -> failures still to answer
        self.failed: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()  # path suffix (of `fail`) -> requests forwarded
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.kubeconfig = tmp / "proxied-kubeconfig"

    def __enter__(self) -> ApiProxy:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        cert, _ = self.tls
        cfg = yaml.safe_load(self.source.read_text())
        ctx = next(c for c in cfg["contexts"] if c["name"] == cfg["current-context"])
        cluster = next(c for c in cfg["clusters"] if c["name"] == ctx["context"]["cluster"])
        cluster["cluster"] = {"server": f"https://127.0.0.1:{port}", "certificate-authority": str(cert)}
        # The client authenticates to nobody: the proxy adds the kubeconfig's credentials upstream.
        user = next(u for u in cfg["users"] if u["name"] == ctx["context"]["user"])
        user["user"] = {"token": "proxied"}
        cfg["clusters"], cfg["users"], cfg["contexts"] = [cluster], [user], [ctx]
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> int:
        up = self.upstream
        upstream_tls = ssl.create_default_context(cafile=up.ssl_ca_cert)
        if up.cert_file:
            upstream_tls.load_cert_chain(up.cert_file, up.key_file)
        self.headers = {"Authorization": up.api_key["authorization"]} if up.api_key.get("authorization") else {}
        self.session = ClientSession(
            connector=TCPConnector(ssl=upstream_tls), timeout=ClientTimeout(total=None), auto_decompress=False
        )
        self.tls = self_signed(self.tmp, "api-proxy")
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(*self.tls)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A client hanging up cancels its handler (and so its upstream watch); shutdown waits for nothing.
        self.runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True, shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=server_tls)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.session.close()

    def _rule(self, path: str) -> str | None:
        return next((suffix for suffix in self.left if path.endswith(suffix)), None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rule = self._rule(request.path)
        if rule is not None and self.left[rule] > 0:
            self.left[rule] -= 1
            self.failed[rule] += 1
            status: dict[str, Any] = {
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                "reason": "ServiceUnavailable", "message": "the API proxy fails this request (test)",
            }  # fmt: skip
            return web.Response(status=503, text=json.dumps(status), content_type="application/json")
        if rule is not None:
            self.forwarded[rule] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"authorization"}}
        async with self.session.request(
            request.method,
            self.upstream.host + request.path_qs,
            headers={**headers, **self.headers},
            data=await request.read() if request.body_exists else None,
            skip_auto_headers=("Content-Type",),  # as sent: the Python client sends a JSON body without one
        ) as upstream:
            out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    out.headers.add(key, value)
            await out.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():  # a watch: every event as it comes
                    await out.write(chunk)
                await out.write_eof()
            except (ClientPayloadError, ConnectionResetError):
                pass  # either side hung up mid-stream (a watch ending): the other notices the closed connection
            return out
