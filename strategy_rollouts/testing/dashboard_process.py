"""Start the dashboard as a real process (local or in-cluster mode), for tests and the benchmark."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

URL = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)")
IN_CLUSTER = re.compile(r"on 127\.0\.0\.1:(\d+)")


class DashboardProcess:
    """`kubectl strategy dashboard` (local) or `python -m strategy_rollouts.dashboard --in-cluster`,
    with `kubeconfig` as its identity; `url`, `port` and (local) `token` once it is ready."""

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        prometheus_url: str,
        log_path: Path,
        in_cluster: bool = False,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig, self.prometheus_url, self.log_path = str(kubeconfig), prometheus_url, log_path
        self.in_cluster, self.extra_args, self.env = in_cluster, extra_args, env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.token = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """What a user opens: with the token in local mode."""
        return f"{self.base}/?token={self.token}" if self.token else f"{self.base}/"

    def start(self, timeout: float = 60.0) -> DashboardProcess:
        if self.in_cluster:
            argv = [sys.executable, "-m", "strategy_rollouts.dashboard", "--in-cluster", "--address", "127.0.0.1"]
            argv += ["--port", "0", "--kubeconfig", self.kubeconfig, "--prometheus-url", self.prometheus_url]
        else:
            plugin = str(Path(sys.executable).parent / "kubectl-strategy")
            argv = [plugin, "--kubeconfig", self.kubeconfig, "dashboard", "--prometheus-url", self.prometheus_url]
        argv += list(self.extra_args)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dashboard exited {self.proc.returncode}: {self.log()[-2000:]}")
            found = (IN_CLUSTER if self.in_cluster else URL).search(self.log())
            if found and self._ready(int(found.group(1))):
                self.port = int(found.group(1))
                self.token = "" if self.in_cluster else found.group(2)
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dashboard not ready within {timeout}s: {self.log()[-2000:]}")

    def _ready(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> DashboardProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
