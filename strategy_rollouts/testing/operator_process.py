"""Start `strategy-rollouts run` as a real process (its own pid, killable), wait until it is live."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        prometheus_url: str,
        log_path: Path,
        namespaces: tuple[str, ...] = (),
        extra_args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.prometheus_url = prometheus_url
        self.log_path = log_path
        self.namespaces = namespaces
        self.extra_args = extra_args
        self.env = dict(env or {})
        self.metrics_port = 0
        self.liveness_port = 0
        self.readiness_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metric_samples(self, name: str, **labels: str) -> list[float]:
        """Values of the operator's own /metrics samples called `name` whose labels include `labels`."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        return [
            float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def readiness(self) -> tuple[int, str]:
        """(HTTP status, body) of /readyz: 200 leader|standby, 503 starting."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.readiness_port}/readyz", timeout=2) as resp:
                return resp.status, resp.read().decode().strip()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode().strip()

    def signal(self, sig: signal.Signals) -> None:
        """SIGSTOP / SIGCONT: freeze and thaw the process (a paused VM, a stalled node)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(sig)

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        self.metrics_port, self.liveness_port, self.readiness_port = free_port(), free_port(), free_port()
        scope = [arg for ns in self.namespaces for arg in ("-n", ns)] or ["-A"]
        argv = [
            sys.executable,
            "-m",
            "strategy_rollouts.main",
            "run",
            *scope,
            "--prometheus-url",
            self.prometheus_url,
            "--prometheus-timeout",
            "2",
            "--metrics-port",
            str(self.metrics_port),
            "--liveness-port",
            str(self.liveness_port),
            "--readiness-port",
            str(self.readiness_port),
            "--kubeconfig",
            self.kubeconfig,
            *self.extra_args,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, **self.env}
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"operator not live after {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup (for restart tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
