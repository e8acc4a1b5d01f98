"""Counting reverse proxies in front of the API server and Prometheus, for the operator only.

The API server's own `apiserver_request_total` counts every client of the shared dev cluster (other
engineers' tests, kube-controller-manager, kwok); this proxy counts exactly the operator's requests
by verb and resource, and its Prometheus queries. Run: `python -m bench.proxy --kubeconfig K
--prometheus URL --out DIR`; it writes DIR/kubeconfig (plain http to the proxy) and DIR/ports.json,
and serves GET /__counts on both ports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from bench.kube import load_creds

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te", "trailer"}


def classify(method: str, path: str, query: str) -> tuple[str, str]:
    """(verb, resource[/subresource]) the way the API server's metrics name them."""
    segs = [s for s in path.split("?")[0].split("/") if s]
    if not segs or segs[0] not in ("api", "apis"):
        return method.lower(), "nonresource"
    rest = segs[2:] if segs[0] == "api" else segs[3:]
    name = sub = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        resource, name = rest[2], (rest[3] if len(rest) > 3 else None)
        sub = rest[4] if len(rest) > 4 else None
    elif rest:
        resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
        sub = rest[2] if len(rest) > 2 else None
    else:
        return method.lower(), "discovery"
    if method == "GET":
        watch = parse_qs(query).get("watch", ["false"])[0] in ("1", "true", "True")
        verb = "watch" if watch else ("get" if name else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())
    return verb, resource + (f"/{sub}" if sub else "")


WRITE_VERBS = {"create", "update", "patch", "delete"}


class Proxy:
    def __init__(self, upstream: str, ssl_ctx: ssl.SSLContext | None, kube: bool) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl_ctx = ssl_ctx
        self.kube = kube
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/__counts":
            return web.json_response(dict(self.counts))
        if request.path == "/__seconds":
            return web.json_response(dict(self.seconds))
        if self.kube:
            verb, resource = classify(request.method, request.path, request.query_string)
            key = f"{verb} {resource}"
        else:
            verb, key = request.method, f"{request.method} {request.path}"
        self.counts[key] += 1
        started = time.monotonic()
        try:
            return await self._forward(request)
        finally:
            if verb != "watch":  # time to the last byte of the upstream answer, per request kind
                self.seconds[key] += time.monotonic() - started

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=self.ssl_ctx if self.ssl_ctx else False),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        drop = HOP | {"authorization"} if self.kube else HOP  # the proxy authenticates upstream itself
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
        body = await request.read()
        async with self.session.request(
            request.method,
            self.upstream + str(request.rel_url),
            headers=headers,
            data=body or None,
            # the kubernetes client sends PUT without Content-Type; aiohttp would add octet-stream (415)
            skip_auto_headers=("Content-Type",),
        ) as up:
            resp = web.StreamResponse(
                status=up.status, headers={k: v for k, v in up.headers.items() if k.lower() not in HOP}
            )
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp


async def serve(args: argparse.Namespace) -> None:
    creds = load_creds(args.kubeconfig)
    ctx = ssl.create_default_context(cafile=creds.ca) if creds.server.startswith("https") else None
    if ctx is not None and creds.cert and creds.key:
        ctx.load_cert_chain(creds.cert, creds.key)
    kube = Proxy(creds.server, ctx, kube=True)
    prom = Proxy(args.prometheus, None, kube=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ports = {}
    for label, proxy in (("kube", kube), ("prometheus", prom)):
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports[label] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bench", "cluster": {"server": f"http://127.0.0.1:{ports['kube']}"}}],
        "users": [{"name": "bench", "user": {"token": "bench-proxy"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
        "current-context": "bench",
    }
    (out / "kubeconfig").write_text(json.dumps(kubeconfig))
    (out / "ports.json").write_text(json.dumps(ports))
    print(f"PROXY READY {json.dumps(ports)}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--out", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
