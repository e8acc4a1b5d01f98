"""A thin, fast Kubernetes client for the harness: raw JSON over one requests.Session, raw watches.

The official client's model deserialization is too slow to watch 1,000 objects from the process
that also takes the timings, so the harness speaks JSON directly.
"""

from __future__ import annotations

import base64
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml


@dataclass(frozen=True)
class Creds:
    server: str
    ca: str | None
    cert: str | None
    key: str | None
    token: str | None


def _file_or_data(entry: dict[str, Any], name: str, tmp: Path) -> str | None:
    if entry.get(name):
        return str(entry[name])
    data = entry.get(f"{name}-data")
    if not data:
        return None
    path = tmp / name
    path.write_bytes(base64.b64decode(data))
    return str(path)


def load_creds(kubeconfig: str | Path) -> Creds:
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    current = doc.get("current-context") or doc["contexts"][0]["name"]
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {})
    tmp = Path(tempfile.mkdtemp(prefix="bench-creds-"))
    return Creds(
        server=cluster["server"].rstrip("/"),
        ca=_file_or_data(cluster, "certificate-authority", tmp),
        cert=_file_or_data(user, "client-certificate", tmp),
        key=_file_or_data(user, "client-key", tmp),
        token=user.get("token"),
    )


class Api:
    def __init__(self, creds: Creds, pool: int = 16) -> None:
        self.creds = creds
        self.session = self._session(pool)

    def _session(self, pool: int = 4) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE would override the cluster's CA
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        s.verify = self.creds.ca or True
        if self.creds.cert and self.creds.key:
            s.cert = (self.creds.cert, self.creds.key)
        if self.creds.token:
            s.headers["Authorization"] = f"Bearer {self.creds.token}"
        return s

    def request(self, method: str, path: str, body: Any = None, ok: Iterable[int] = (), **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        r = self.session.request(
            method,
            self.creds.server + path,
            data=json.dumps(body) if body is not None else None,
            headers=headers,
            timeout=60,
            **kw,
        )
        if r.status_code >= 300 and r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        if r.status_code == 404:  # accepted as "absent": None, not the Status body
            return None
        return r.json() if r.content and r.headers.get("Content-Type", "").startswith("application/json") else None

    def get(self, path: str) -> Any:
        """The object, or None when the API server answers 404."""
        return self.request("GET", path, ok=(404,))

    def raw(self, path: str) -> str:
        r = self.session.get(self.creds.server + path, timeout=60)
        r.raise_for_status()
        return r.text

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body, ok=(409,))

    def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, body, headers={"Content-Type": "application/merge-patch+json"})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path, ok=(404,))

    def parallel(self, fn: Callable[[Any], Any], items: list[Any], workers: int = 8) -> list[Any]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))


def ns_path(namespace: str, resource: str, group: str = "", version: str = "v1") -> str:
    base = f"/apis/{group}/{version}" if group else "/api/v1"
    return f"{base}/namespaces/{namespace}/{resource}"


class Watcher(threading.Thread):
    """Every event of a collection, with the receive time (time.time()), to a callback; reconnects."""

    def __init__(self, api: Api, path: str, on_event: Callable[[float, str, dict[str, Any]], None]) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.session = api._session(1)
        self.path = path
        self.on_event = on_event
        self.stopped = threading.Event()
        self.synced = threading.Event()
        self.errors = 0

    def run(self) -> None:
        rv: str | None = None
        while not self.stopped.is_set():
            try:
                if rv is None:
                    listing = self.session.get(self.api.creds.server + self.path, timeout=60).json()
                    if "resourceVersion" not in (listing.get("metadata") or {}):
                        # A Status (e.g. 404 while a fresh cluster is still establishing the CRD): retry.
                        raise ValueError(f"listing {self.path}: {listing.get('message', listing)}")
                    now = time.time()
                    for item in listing.get("items", []):
                        self.on_event(now, "ADDED", item)
                    rv = listing["metadata"]["resourceVersion"]
                    self.synced.set()
                params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "60", "allowWatchBookmarks": "true"}
                with self.session.get(
                    self.api.creds.server + self.path, params=params, stream=True, timeout=(5, 90)
                ) as resp:
                    for line in _lines(resp):
                        if self.stopped.is_set():
                            return
                        now = time.time()
                        event = json.loads(line)
                        obj = event.get("object", {})
                        if event.get("type") == "ERROR":
                            rv = None  # too old: relist
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if event.get("type") != "BOOKMARK":
                            self.on_event(now, event["type"], obj)
            except (requests.RequestException, ValueError):
                self.errors += 1
                time.sleep(0.2)

    def stop(self) -> None:
        self.stopped.set()


def _lines(resp: requests.Response) -> Iterable[bytes]:
    """Complete lines as soon as their chunk arrives (iter_lines would wait for a full buffer)."""
    buf = b""
    for chunk in resp.iter_content(chunk_size=None):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
