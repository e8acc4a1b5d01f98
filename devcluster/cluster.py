"""Start, reuse and stop the local control plane (kwokctl binary runtime), Prometheus and Redis.

Standard library only, so it runs with any python3 (``make dev-cluster``) as well as from pytest.
Every process we start is recorded by pid in the state directory and stopped by pid.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from devcluster import realnode

REPO_ROOT = Path(__file__).resolve().parent.parent
DEVCLUSTER_DIR = Path(__file__).resolve().parent
DEFAULT_STATE_DIR = REPO_ROOT / ".devcluster"
STATE_FILE = "cluster.json"
CLUSTER_NAME = "strategy-rollouts"
NODE_COUNT = 3
BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "kwok",
    "kwokctl",
    "helm",
    "kubelet",
    "kube-proxy",
    "pause",
)
# The status admission policies (charts/strategy-rollouts/templates/), applied to every cluster started here,
# with the kubeconfig's user (who runs the operator outside the cluster) as the operator's identity.
POLICY_TEMPLATE = "templates/status-admission-policy.yaml"
POLICY_RELEASE = "strategy-rollouts-devcluster"
POLICY_NAMESPACE = "default"
POLICY_PARAMS = f"{POLICY_RELEASE}-status-writers"  # the ConfigMap naming the operator's identity
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]}, {"level": "None"}],
}
PROMETHEUS_BIN = os.environ.get("DEVCLUSTER_PROMETHEUS", "/usr/bin/prometheus")
REDIS_BIN = os.environ.get("DEVCLUSTER_REDIS", "/usr/bin/redis-server")


def log(msg: str) -> None:
    print(f"[devcluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class CommandError(subprocess.CalledProcessError):
    """A failed command whose message includes what it printed."""

    def __str__(self) -> str:
        cmd = " ".join(map(str, self.cmd)) if isinstance(self.cmd, list | tuple) else str(self.cmd)
        return (
            f"command {cmd!r} exited with {self.returncode}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )


# ---------------------------------------------------------------------------------------------
# versions and binaries


def versions() -> dict[str, str]:
    """The pins in devcluster/versions.env."""
    out: dict[str, str] = {}
    for line in (DEVCLUSTER_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def controller_qps() -> int | None:
    """DEVCLUSTER_CONTROLLER_QPS: the client QPS of kube-controller-manager and kube-scheduler (burst twice
    that) in a cluster started now; unset: their defaults (20 and 50 QPS), as in most clusters."""
    value = os.environ.get("DEVCLUSTER_CONTROLLER_QPS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"DEVCLUSTER_CONTROLLER_QPS={value!r}: a positive integer, or unset for the defaults")
    return int(value)


def cache_dir() -> Path:
    return Path(os.environ.get("STRATEGY_ROLLOUTS_CACHE", str(Path.home() / ".cache" / "strategy-rollouts")))


def expected_bin_dir() -> Path:
    v = versions()
    key = f"k8s-{v['KUBERNETES_VERSION']}_etcd-{v['ETCD_VERSION']}_kwok-{v['KWOK_VERSION']}_helm-{v['HELM_VERSION']}"
    return cache_dir() / "bin" / key


def ensure_binaries(*, verify: bool = False) -> Path:
    """Return the directory holding every binary, building what is missing (devcluster/build.sh).

    Without ``verify`` a complete directory is trusted as is (milliseconds); ``build.sh`` itself
    runs each binary's version command and rebuilds any that fails.
    """
    d = expected_bin_dir()
    if not verify and all(os.access(d / b, os.X_OK) for b in BINARIES):
        return d
    log("building/verifying binaries with devcluster/build.sh (cold: many minutes)")
    r = subprocess.run(["bash", str(DEVCLUSTER_DIR / "build.sh")], stdout=subprocess.PIPE, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"devcluster/build.sh failed with exit code {r.returncode}")
    return Path(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# processes

_LAUNCHER = """
import os, subprocess, sys
log = open(sys.argv[2], "ab")
p = subprocess.Popen(sys.argv[3:], cwd=sys.argv[1], stdin=subprocess.DEVNULL, stdout=log,
                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
sys.stdout.write(str(p.pid))
sys.stdout.flush()
os._exit(0)
"""


def spawn_detached(argv: list[str], log_path: Path, cwd: Path) -> int:
    """Start argv in its own session, detached from us (it outlives this process); return its pid."""
    r = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(cwd), str(log_path), *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(r.stdout.strip())


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def become_subreaper() -> bool:
    """Make this process adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so that the daemons we
    start (and kwokctl's) can be reaped by us after they stop: this machine's pid 1 reaps nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap(pid: int | None, timeout: float = 5.0) -> None:
    """Collect pid's exit status if it is our (adopted) child and has exited (or is exiting: a Go
    process's main thread shows as a zombie while its other threads still wind down)."""
    if not pid:
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except OSError:  # not our child (or already reaped)
            return
        if done or pid_alive(pid) or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def stop_pid(pid: int | None, needle: str, timeout: float = 15.0) -> None:
    """SIGTERM (then SIGKILL) pid, but only if it is still the process we started (cmdline check)."""
    if not pid or not pid_alive(pid) or needle not in pid_cmdline(pid):
        reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            reap(pid)
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    reap(pid)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (kernel-chosen, so concurrent clusters don't collide)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (OSError, ValueError):
        return None


def redis_ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(what: str, pred: Any, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# the cluster


class DevCluster:
    """A running local control plane + Prometheus + Redis (or an external cluster, E2E_KUBECONFIG).

    Attributes: ``kubeconfig``, ``prometheus_url``, ``redis_url``, ``state_dir``, ``bin_dir``.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        bin_dir: Path,
        kubeconfig: Path,
        prometheus_url: str,
        redis_url: str,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.bin_dir = Path(bin_dir)
        self.kubeconfig = Path(kubeconfig)
        self.prometheus_url = prometheus_url
        self.redis_url = redis_url
        self._state: dict[str, Any] = state if state is not None else {}
        self._real_node: realnode.RealNode | None = None

    def __repr__(self) -> str:
        return (
            f"DevCluster(kubeconfig={str(self.kubeconfig)!r}, prometheus_url={self.prometheus_url!r}, "
            f"redis_url={self.redis_url!r}, state_dir={str(self.state_dir)!r})"
        )

    # -- commands ------------------------------------------------------------------------------

    @staticmethod
    def free_port() -> int:
        """A free TCP port on 127.0.0.1."""
        return free_port()

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, PATH (bin_dir first), PROMETHEUS_URL, REDIS_URL."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["PROMETHEUS_URL"] = self.prometheus_url
        env["REDIS_URL"] = self.redis_url
        return env

    def _run(
        self, argv: list[str], *, input: str | None, check: bool, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else self.env(),
            timeout=300,
            check=False,
        )
        if check and r.returncode != 0:
            raise CommandError(r.returncode, argv, r.stdout, r.stderr)
        return r

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; text stdout/stderr captured; raises CommandError if check."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        return self._run(argv, input=input, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster (helm's cache/config/data kept under state_dir/helm)."""
        env = self.env()
        hdir = self.state_dir / "helm"
        for k, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env.setdefault(k, str(hdir / sub))
        argv = [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig}", *args]
        return self._run(argv, input=None, check=check, env=env)

    # -- admission -----------------------------------------------------------------------------

    def whoami(self) -> str:
        """The kubeconfig's user name (SelfSubjectReview): the identity an operator run here writes as."""
        return self.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()

    def apply_status_policy(self) -> None:
        """Apply the chart's status admission policies (docs/rbac.md), rendered from the chart (the one
        source) under their own release name, so that a test's chart install or kustomize teardown never
        replaces or removes them. The kubeconfig's user is the operator's identity: the operator
        processes of the tests and the demo run with this kubeconfig, outside the cluster."""
        chart = REPO_ROOT / "charts" / "strategy-rollouts"
        rendered = self.helm(
            "template", POLICY_RELEASE, str(chart), "--namespace", POLICY_NAMESPACE, "--show-only", POLICY_TEMPLATE,
            "--set-json", f"admissionPolicy.operatorIdentity.users={json.dumps([self.whoami()])}",
        ).stdout  # fmt: skip
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=rendered)
        # The single policy of older checkouts (a reused dev cluster): its rule is now part of these.
        legacy = f"{POLICY_RELEASE}-requests"
        self.kubectl("delete", "validatingadmissionpolicybinding", legacy, "--ignore-not-found", check=False)
        self.kubectl("delete", "validatingadmissionpolicy", legacy, "--ignore-not-found", check=False)

    def operator_identities(self) -> list[str]:
        """The user names the status admission policies treat as the operator."""
        cm = json.loads(self.kubectl("get", "configmap", POLICY_PARAMS, "-n", POLICY_NAMESPACE, "-o", "json").stdout)
        return [u.strip() for u in (cm.get("data") or {}).get("users", "").splitlines() if u.strip()]

    def set_operator_identity(self, user: str, present: bool = True) -> None:
        """Add (or remove) `user` as the operator's identity, e.g. an operator's ServiceAccount in the
        cluster while a test runs it there: the parameter of the policies, not the policies, changes."""
        for _ in range(10):
            cm = json.loads(
                self.kubectl("get", "configmap", POLICY_PARAMS, "-n", POLICY_NAMESPACE, "-o", "json").stdout
            )
            users = [u.strip() for u in (cm.get("data") or {}).get("users", "").splitlines() if u.strip()]
            wanted = [u for u in users if u != user] + ([user] if present else [])
            if wanted == users:
                return
            cm.setdefault("data", {})["users"] = "".join(f"{u}\n" for u in wanted)
            if self.kubectl("replace", "-f", "-", input=json.dumps(cm), check=False).returncode == 0:
                return  # replace carries the resourceVersion read: a concurrent edit makes it fail, then retry
            time.sleep(0.2)
        raise RuntimeError(f"could not update configmap {POLICY_NAMESPACE}/{POLICY_PARAMS}")

    # -- Prometheus ----------------------------------------------------------------------------

    @property
    def prometheus_sd_dir(self) -> Path:
        """Directory of file_sd JSON files (one per job) that Prometheus watches."""
        p = self._state.get("prometheus") or {}
        if not p.get("sd_dir"):
            raise RuntimeError("this Prometheus is external (PROMETHEUS_URL): no file_sd directory to add targets to")
        return Path(p["sd_dir"])

    @property
    def prometheus_rules_dir(self) -> Path:
        """Directory of rule files (*.yml) loaded on reload_prometheus()."""
        return Path(self._state["prometheus"]["rules_dir"])

    def prometheus_api(self, path: str, **params: str) -> Any:
        """GET {prometheus_url}/api/v1/{path}; returns the parsed ``data`` field."""
        url = f"{self.prometheus_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        got = http_get(url, timeout=10)
        if got is None:
            raise ConnectionError(f"Prometheus at {self.prometheus_url} is not answering")
        status, body = got
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise RuntimeError(f"Prometheus {path}: HTTP {status}: {body[:500]!r}")
        return doc["data"]

    def _active_targets(self) -> list[dict[str, Any]]:
        data = self.prometheus_api("targets", state="active")
        return list(data.get("activeTargets", []))

    def add_scrape_target(self, job: str, target: str, labels: dict[str, str] | None = None) -> None:
        """Scrape ``target`` ("127.0.0.1:PORT", path /metrics) every 1 s as job ``job``.

        Returns once Prometheus reports the target up (30 s timeout; TimeoutError otherwise).
        Adding the same job again replaces its target.
        """
        entry = [{"targets": [target], "labels": {**(labels or {}), "job": job}}]
        sd_dir = self.prometheus_sd_dir
        tmp = sd_dir / f".{job}.json.tmp"
        tmp.write_text(json.dumps(entry))
        tmp.rename(sd_dir / f"{job}.json")
        last: list[dict[str, Any]] = []

        def up() -> bool:
            nonlocal last
            with contextlib.suppress(ConnectionError, RuntimeError):
                last = [t for t in self._active_targets() if t.get("labels", {}).get("job") == job]
            return any(t.get("health") == "up" and target in t.get("scrapeUrl", "") for t in last)

        try:
            wait_until(f"Prometheus to scrape {target} as job {job!r}", up, timeout=30, interval=0.25)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last seen: {json.dumps(last)[:1000]}") from None

    def remove_scrape_target(self, job: str) -> None:
        """Stop scraping job ``job``; returns once Prometheus has dropped it (10 s at most)."""
        with contextlib.suppress(FileNotFoundError):
            (self.prometheus_sd_dir / f"{job}.json").unlink()

        def gone() -> bool:
            try:
                return not any(t.get("labels", {}).get("job") == job for t in self._active_targets())
            except (ConnectionError, RuntimeError):
                return True

        with contextlib.suppress(TimeoutError):
            wait_until(f"Prometheus to drop job {job!r}", gone, timeout=10, interval=0.25)

    def reload_prometheus(self) -> None:
        """POST /-/reload (picks up rule files written to prometheus_rules_dir)."""
        req = urllib.request.Request(f"{self.prometheus_url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def _own_prometheus(self) -> dict[str, Any]:
        p = self._state.get("prometheus")
        if not p:
            raise RuntimeError("this Prometheus is external (PROMETHEUS_URL): not ours to stop or start")
        return dict(p) if not isinstance(p, dict) else p

    def stop_prometheus(self) -> None:
        """Kill Prometheus; its port, config and data are kept for start_prometheus()."""
        p = self._own_prometheus()
        stop_pid(p.get("pid"), PROMETHEUS_BIN)
        p["pid"] = None
        self._save()

    def start_prometheus(self) -> None:
        """(Re)start Prometheus on the same port with the same data; waits until it is ready."""
        p = self._own_prometheus()
        if pid_alive(p.get("pid")) and PROMETHEUS_BIN in pid_cmdline(p["pid"]):
            return
        port = int(p["port"])
        argv = [
            PROMETHEUS_BIN,
            f"--config.file={p['config']}",
            f"--storage.tsdb.path={p['data_dir']}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        # the old process's socket may linger a moment after a kill
        wait_until(f"port {port} to be free", lambda: _port_free(port), timeout=15)
        p["pid"] = spawn_detached(argv, self.state_dir / "logs" / "prometheus.log", cwd=self.state_dir)
        self._save()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(
                "Prometheus /-/ready",
                lambda: (r := http_get(f"{url}/-/ready")) is not None and r[0] == 200,
                timeout=60,
            )
        except TimeoutError:
            if not pid_alive(p["pid"]):
                raise RuntimeError(f"Prometheus exited; see {self.state_dir / 'logs/prometheus.log'}") from None
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def _save(self) -> None:
        if self._state.get("external_state"):
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(self._state, indent=2))
        tmp.rename(self.state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path = DEFAULT_STATE_DIR) -> DevCluster | None:
        """The cluster recorded in state_dir, or None (healthy or not: see healthy())."""
        try:
            state = json.loads((Path(state_dir) / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(
            state_dir=Path(state_dir),
            bin_dir=Path(state["bin_dir"]),
            kubeconfig=Path(state["kubeconfig"]),
            prometheus_url=state["prometheus_url"],
            redis_url=state["redis_url"],
            state=state,
        )

    def apiserver_ready(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        try:
            r = subprocess.run(
                [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", "get", "--raw=/readyz"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return r.returncode == 0 and r.stdout.strip() == "ok"

    def prometheus_ready(self) -> bool:
        r = http_get(f"{self.prometheus_url}/-/ready")
        return r is not None and r[0] == 200

    def redis_ready(self) -> bool:
        port = urllib.parse.urlsplit(self.redis_url).port
        return port is not None and redis_ping(port)

    def healthy(self) -> bool:
        return self.apiserver_ready() and self.prometheus_ready() and self.redis_ready()

    def heal(self) -> bool:
        """healthy(), after restarting our Prometheus if only it is down (e.g. a test stopped it)."""
        if not (self.apiserver_ready() and self.redis_ready()):
            return False
        if self.real_node is not None and not self.real_node.alive():
            return False
        if not self.prometheus_ready() and self._state.get("prometheus"):
            try:
                self.start_prometheus()
            except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError):
                return False
        return self.prometheus_ready()

    def status(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig),
            "apiserver_ready": self.apiserver_ready(),
            "prometheus_url": self.prometheus_url,
            "prometheus_ready": self.prometheus_ready(),
            "redis_url": self.redis_url,
            "redis_ready": self.redis_ready(),
            "state_dir": str(self.state_dir),
            "bin_dir": str(self.bin_dir),
            "pids": self.pids(),
        }

    def pids(self) -> dict[str, int]:
        """Live pids of every process this cluster started (ours and kwokctl's)."""
        out: dict[str, int] = {}
        for name in ("prometheus", "redis"):
            pid = (self._state.get(name) or {}).get("pid")
            if pid and pid_alive(pid):
                out[name] = int(pid)
        out.update({n: p for n, p in self._kwok_pids().items() if pid_alive(p)})
        return out

    def _kwok_pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        kw = self._state.get("kwok")
        if kw:
            for pf in (Path(kw["workdir"]) / "clusters" / kw["name"] / "pids").glob("*.pid"):
                with contextlib.suppress(ValueError, OSError):
                    out[pf.stem] = int(pf.read_text().strip())
        return out

    def export_lines(self) -> str:
        return (
            f"export KUBECONFIG={self.kubeconfig}\n"
            f"export PROMETHEUS_URL={self.prometheus_url}\n"
            f"export REDIS_URL={self.redis_url}\n"
            f"export PATH={self.bin_dir}:$PATH\n"
        )

    @classmethod
    def start(
        cls,
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        external_kubeconfig: Path | None = None,
        prometheus_url: str | None = None,
        redis_url: str | None = None,
        owner_pid: int | None = None,
        keeper_pid: int | None = None,
    ) -> DevCluster:
        """Start what is needed and return the cluster. On any failure, everything started is stopped.

        ``external_kubeconfig``: use that cluster instead of starting one (Prometheus/Redis are
        still started here unless their URLs are given).
        """
        t0 = time.monotonic()
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "logs").mkdir(exist_ok=True)
        bin_dir = ensure_binaries()
        state: dict[str, Any] = {
            "bin_dir": str(bin_dir),
            "versions": versions(),
            "owner_pid": owner_pid,
            "keeper_pid": keeper_pid,
            "ready": False,
            "kubeconfig": str(external_kubeconfig or state_dir / "kubeconfig"),
            "prometheus_url": prometheus_url or "",
            "redis_url": redis_url or "",
            "kwok": None,
            "prometheus": None,
            "redis": None,
            "real_node": None,
        }
        self = cls(
            state_dir=state_dir,
            bin_dir=bin_dir,
            kubeconfig=Path(state["kubeconfig"]),
            prometheus_url=state["prometheus_url"],
            redis_url=state["redis_url"],
            state=state,
        )
        self._save()
        try:
            if not redis_url:
                self._start_redis()
            if not prometheus_url:
                self._start_prometheus_first()
            if external_kubeconfig is None:
                self._start_kwok()
                self.apply_status_policy()
                if realnode.enabled():
                    self.start_real_node()
            state["ready"] = True
            self._save()
        except BaseException:
            log("start failed; stopping what was started")
            self.down(remove_state=False)
            raise
        log(f"up in {time.monotonic() - t0:.1f}s")
        return self

    def _start_redis(self) -> None:
        port = free_port()
        rdir = self.state_dir / "redis"
        rdir.mkdir(exist_ok=True)
        argv = [
            REDIS_BIN,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(rdir),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        self._state["redis"] = {"port": port, "pid": None}
        self._state["redis"]["pid"] = spawn_detached(argv, self.state_dir / "logs" / "redis.log", self.state_dir)
        self.redis_url = self._state["redis_url"] = f"redis://127.0.0.1:{port}/0"
        self._save()
        wait_until(f"redis on :{port}", lambda: redis_ping(port), timeout=20)
        log(f"redis ready at {self.redis_url}")

    def _start_prometheus_first(self) -> None:
        pdir = self.state_dir / "prometheus"
        sd_dir, rules_dir, data_dir = pdir / "targets", pdir / "rules", pdir / "data"
        for d in (sd_dir, rules_dir, data_dir):
            d.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(rules_dir / "*.yml"), str(rules_dir / "*.yaml")],
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
                {
                    # one JSON file per job in targets/; each sets its own `job` label
                    "job_name": "file_sd",
                    "file_sd_configs": [{"files": [str(sd_dir / "*.json")], "refresh_interval": "1s"}],
                },
            ],
        }
        cfg = pdir / "prometheus.yml"
        cfg.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self._state["prometheus"] = {
            "port": port,
            "pid": None,
            "config": str(cfg),
            "data_dir": str(data_dir),
            "sd_dir": str(sd_dir),
            "rules_dir": str(rules_dir),
        }
        self.prometheus_url = self._state["prometheus_url"] = f"http://127.0.0.1:{port}"
        self._save()
        self.start_prometheus()
        log(f"prometheus ready at {self.prometheus_url}")

    def _start_kwok(self, attempts: int = 3) -> None:
        workdir = self.state_dir / "kwok"
        workdir.mkdir(exist_ok=True)
        self._state["kwok"] = {"workdir": str(workdir), "name": CLUSTER_NAME}
        self._save()
        for attempt in range(1, attempts + 1):
            try:
                self._create_kwok_cluster(workdir)
                return
            except (CommandError, TimeoutError) as e:
                if attempt == attempts:
                    raise
                log(f"control plane start failed (attempt {attempt}; retrying on new ports): {e}")
                self._kwokctl("delete", "cluster", check=False)
                for name, pid in self._kwok_pids().items():
                    stop_pid(pid, name, timeout=5)

    def _create_kwok_cluster(self, workdir: Path) -> None:
        b = self.bin_dir
        kv = versions()["KUBERNETES_VERSION"]
        ports = free_ports(6)
        pki = workdir / "clusters" / CLUSTER_NAME / "pki"
        config = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": {
                "runtime": "binary",
                "bindAddress": "127.0.0.1",
                "kubeVersion": kv,
                # every port explicit: kwokctl's own allocator races with concurrent clusters
                "kubeApiserverPort": ports[0],
                "etcdPort": ports[1],
                "etcdPeerPort": ports[2],
                "kubeControllerManagerPort": ports[3],
                "kubeSchedulerPort": ports[4],
                "kwokControllerPort": ports[5],
                "kubeApiserverBinary": str(b / "kube-apiserver"),
                "kubeControllerManagerBinary": str(b / "kube-controller-manager"),
                "kubeSchedulerBinary": str(b / "kube-scheduler"),
                "kubectlBinary": str(b / "kubectl"),
                "kwokControllerBinary": str(b / "kwok"),
                "etcdBinary": str(b / "etcd"),
                "cacheDir": str(workdir / "cache"),
                # the in-cluster clients of the real node reach the apiserver at the `kubernetes` Service's IP
                "kubeApiserverCertSANs": [realnode.SERVICE_IP, realnode.BRIDGE_IP],
            },
            "componentsPatches": [
                {
                    "name": "kube-apiserver",
                    "extraArgs": [
                        {"key": "advertise-address", "value": "127.0.0.1"},
                        {"key": "endpoint-reconciler-type", "value": "none"},
                        {"key": "service-cluster-ip-range", "value": realnode.SERVICE_CIDR},
                        # else it resolves the real node's name through the machine's resolver
                        {"key": "kubelet-preferred-address-types", "value": "InternalIP"},
                        # `kubectl logs/exec` on the real node: the kubelet authenticates the apiserver by cert
                        {"key": "kubelet-client-certificate", "value": str(pki / "admin.crt")},
                        {"key": "kubelet-client-key", "value": str(pki / "admin.key")},
                    ],
                },
                {
                    # kwok manages only its own nodes (annotated by `kwokctl scale node`), never the real one
                    "name": "kwok-controller",
                    "extraArgs": [
                        {"key": "manage-all-nodes", "value": "false"},
                        {"key": "manage-nodes-with-annotation-selector", "value": "kwok.x-k8s.io/node=fake"},
                    ],
                },
            ],
        }
        qps = controller_qps()
        if qps:  # the benchmarks: the cluster's own controllers must not be what limits N = 1,000
            limits = [{"key": "kube-api-qps", "value": str(qps)}, {"key": "kube-api-burst", "value": str(2 * qps)}]
            for name in ("kube-controller-manager", "kube-scheduler"):
                config["componentsPatches"].append({"name": name, "extraArgs": limits})  # type: ignore[attr-defined]
        self._state["kwok"]["controller_qps"] = qps
        # every call made by a ServiceAccount (the in-cluster operator's, the quoters') at Metadata level:
        # tests read the log to check RBAC against what is really called (audit_log_path)
        policy = workdir / "audit-policy.yaml"
        policy.write_text(json.dumps(AUDIT_POLICY))
        config["options"]["kubeAuditPolicy"] = str(policy)  # type: ignore[index]
        cfg = workdir / "kwokctl.yaml"
        cfg.write_text(json.dumps(config, indent=2))
        env = self._kwok_env()
        t0 = time.monotonic()
        log(f"starting control plane (kwokctl, Kubernetes {kv})")
        r = subprocess.run(
            [
                str(b / "kwokctl"),
                f"--config={cfg}",
                "create",
                "cluster",
                f"--name={CLUSTER_NAME}",
                f"--kubeconfig={workdir / 'merged-kubeconfig.yaml'}",
                "--wait=3m",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        (self.state_dir / "logs" / "kwokctl-create.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise CommandError(r.returncode, r.args, r.stdout, r.stderr)
        shutil.copyfile(workdir / "clusters" / CLUSTER_NAME / "kubeconfig.yaml", self.kubeconfig)
        wait_until("kube-apiserver /readyz", self.apiserver_ready, timeout=120, interval=0.5)
        dead = [n for n, pid in self._kwok_pids().items() if not pid_alive(pid)]
        if dead:
            raise TimeoutError(f"control plane components exited: {dead} (see {workdir}/clusters/*/logs)")
        log(f"apiserver ready in {time.monotonic() - t0:.1f}s; creating {NODE_COUNT} fake nodes")
        self._kwokctl("scale", "node", f"--replicas={NODE_COUNT}")
        self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=90s")
        # only the fake strategy workloads tolerate this (realnode.KWOK_TOLERATION); the rest goes to the real node
        t = realnode.KWOK_TAINT
        self.kubectl("taint", "nodes", "-l", "type=kwok", f"{t['key']}={t['value']}:{t['effect']}", "--overwrite")
        # pods are only admitted once the default ServiceAccount exists
        wait_until(
            "the default ServiceAccount",
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            timeout=120,
            interval=0.5,
        )
        log(f"control plane ready in {time.monotonic() - t0:.1f}s")

    def restart_apiserver(self, timeout: float = 120.0) -> float:
        """Crash kube-apiserver (SIGKILL) and start it again with the very same flags; returns the
        seconds until /readyz answered again. `kwokctl start cluster` starts only the components
        that are not running (kwokctl has no per-component restart command)."""
        if not self._state.get("kwok"):
            raise RuntimeError("this control plane is not ours (E2E_KUBECONFIG): its API server cannot be restarted")
        pid = self._kwok_pids().get("kube-apiserver")
        if not pid or not pid_alive(pid):
            raise RuntimeError("kube-apiserver is not running")
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        # reaped (by us, or by the keeper of a `make dev-cluster`): kwokctl treats a zombie as running
        wait_until("kube-apiserver to exit", lambda: not pid_alive(pid), timeout=15, interval=0.05)
        reap(pid)
        self._kwokctl("start", "cluster")
        wait_until("kube-apiserver /readyz", self.apiserver_ready, timeout=timeout, interval=0.2)
        return time.monotonic() - t0

    def _kwok_env(self) -> dict[str, str]:
        env = dict(os.environ)
        kw = self._state["kwok"]
        env["KWOK_WORKDIR"] = kw["workdir"]
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "kwokctl"), *args, f"--name={self._state['kwok']['name']}"]
        return self._run(argv, input=None, check=check, env=self._kwok_env())

    # -- the real node --------------------------------------------------------------------------

    @property
    def real_node(self) -> realnode.RealNode | None:
        """The real node of this cluster (None: kwok nodes only, or an external cluster)."""
        info = self._state.get("real_node")
        if not info:
            return None
        if self._real_node is None:
            self._real_node = realnode.RealNode(Path(info["work_dir"]), self.bin_dir, log)
        return self._real_node

    def start_real_node(self) -> float:
        """Start the real node (kubelet, kube-proxy, containerd) and wait until it is Ready; returns the seconds."""
        kw = self._state["kwok"]
        self._state["real_node"] = {"work_dir": str(self.state_dir / "node")}
        self._save()
        node = self.real_node
        assert node is not None
        port = urllib.parse.urlsplit(
            self.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
        ).port
        assert port is not None
        took = node.start(
            kubeconfig=self.kubeconfig,
            ca=Path(kw["workdir"]) / "clusters" / kw["name"] / "pki" / "ca.crt",
            apiserver_port=port,
            ports=free_ports(4),
            spawn=lambda argv, logfile: spawn_detached(argv, logfile, self.state_dir),
            kubectl=self.kubectl,
        )
        self._state["real_node"]["ready_seconds"] = round(took, 1)
        self._save()
        return took

    @property
    def controller_qps(self) -> int | None:
        """The client QPS this cluster's controller-manager and scheduler were started with (None: defaults)."""
        return (self._state.get("kwok") or {}).get("controller_qps")

    @property
    def audit_log_path(self) -> Path:
        """The apiserver's audit log (JSON lines; ServiceAccount users' calls at Metadata level)."""
        kw = self._state["kwok"]
        return Path(kw["workdir"]) / "clusters" / kw["name"] / "logs" / "audit.log"

    def load_images(self, names: Iterable[str] = realnode.IMAGES) -> dict[str, Path]:
        """Build (or reuse) strategy-rollouts:dev and quoter:dev (or `names`) and import them into the real node."""
        node = self.real_node
        if node is None:
            raise RuntimeError("this cluster has no real node (DEVCLUSTER_REAL_NODE=0 or an external cluster)")
        archives = realnode.build_images(cache_dir(), names)
        for archive in archives.values():
            node.import_image(archive)
        return archives

    def expose_to_pods(self, port: int) -> str:
        """127.0.0.1:port on the host, reachable from the real node's pods at the returned "10.244.0.1:port"."""
        node = self.real_node
        if node is None:
            raise RuntimeError("this cluster has no real node")
        return node.expose(port, lambda argv, logfile: spawn_detached(argv, logfile, self.state_dir))

    def stop_real_node(self) -> None:
        """Delete the real node's pods, stop it and restore the machine from its record (idempotent)."""
        node = self.real_node
        if node is None:
            return
        if self.apiserver_ready():
            node.delete_pods(self.kubectl)
        node.teardown()

    def down(self, *, remove_state: bool = True) -> None:
        """Stop every process this cluster started (by pid) and, by default, remove its state."""
        node = self.real_node
        if node is not None and self.apiserver_ready():
            node.delete_pods(self.kubectl)
        kw = self._state.get("kwok")
        if kw:
            pids = self.pids()
            r = self._kwokctl("delete", "cluster", check=False)
            if r.returncode != 0:
                log(f"kwokctl delete cluster failed ({r.returncode}): {r.stderr.strip()[-500:]}")
            for name, pid in pids.items():  # belt and braces: anything kwokctl left behind
                if name not in ("prometheus", "redis"):
                    stop_pid(pid, name, timeout=5)
        for name, binary in (("prometheus", PROMETHEUS_BIN), ("redis", REDIS_BIN)):
            info = self._state.get(name)
            if info:
                stop_pid(info.get("pid"), binary)
                info["pid"] = None
        if node is not None:
            node.teardown()  # after the control plane: nothing recreates the pods now
        keeper = self._state.get("keeper_pid")
        if keeper and keeper != os.getpid():
            # the keeper exits by itself once it has reaped every child; make sure of it
            with contextlib.suppress(TimeoutError):
                wait_until("the keeper to exit", lambda: not pid_alive(keeper), timeout=10, interval=0.1)
            stop_pid(keeper, "devcluster", timeout=5)
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            self._save()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# ---------------------------------------------------------------------------------------------
# entry points used by the CLI and by tests/conftest.py


def up(state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 600) -> tuple[DevCluster, bool]:
    """Reuse the healthy cluster in state_dir, or (after cleaning any broken one) start one that
    outlives this process: a detached keeper process starts it and reaps its processes.

    Returns (cluster, reused).
    """
    state_dir = Path(state_dir).resolve()
    existing = DevCluster.load(state_dir)
    if existing is not None:
        if existing.heal():
            return existing, True
        log(f"found a stale/broken cluster in {state_dir}; stopping it")
        existing.down()
    shutil.rmtree(state_dir, ignore_errors=True)
    (state_dir / "logs").mkdir(parents=True)
    ensure_binaries()  # in the foreground, so that a cold build shows its progress here
    keeper_log = state_dir / "logs" / "keeper.log"
    keeper = spawn_detached(
        [sys.executable, "-m", "devcluster", "_keep", f"--state-dir={state_dir}"], keeper_log, REPO_ROOT
    )
    pos = 0
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError), keeper_log.open("rb") as f:
            f.seek(pos)
            chunk = f.read()
            pos += len(chunk)
            sys.stderr.write(chunk.decode(errors="replace"))
            sys.stderr.flush()
        c = DevCluster.load(state_dir)
        if c is not None and c._state.get("ready"):
            return c, False
        if not pid_alive(keeper) or time.monotonic() > deadline:
            stop_pid(keeper, "devcluster")
            if c is not None:
                c.down(remove_state=False)
            raise RuntimeError(f"the dev cluster did not start; see {keeper_log}")
        time.sleep(0.2)


def keep(state_dir: Path) -> int:
    """The keeper process: start the cluster as a child subreaper, then reap its processes until
    none is left (after ``down``), and exit."""
    become_subreaper()
    try:
        DevCluster.start(state_dir, keeper_pid=os.getpid())
    except BaseException as e:
        log(f"start failed: {e}")
        return 1
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def down(state_dir: Path = DEFAULT_STATE_DIR) -> bool:
    existing = DevCluster.load(state_dir)
    if existing is None:
        shutil.rmtree(state_dir, ignore_errors=True)
        return False
    existing.down()
    return True


SESSION_ROOT = Path(tempfile.gettempdir())
SESSION_PREFIX = "strategy-rollouts-devcluster-"


def reap_orphaned_sessions() -> None:
    """Stop clusters left by test sessions that died without cleaning up (e.g. SIGKILL)."""
    for d in SESSION_ROOT.glob(f"{SESSION_PREFIX}*"):
        c = DevCluster.load(d)
        if c is None:
            shutil.rmtree(d, ignore_errors=True)
            continue
        owner = c._state.get("owner_pid")
        if owner and pid_alive(owner):
            continue
        log(f"stopping orphaned session cluster {d}")
        c.down()


@contextlib.contextmanager
def session_cluster() -> Iterator[DevCluster]:
    """The cluster for one test session.

    1. ``E2E_KUBECONFIG`` set: that cluster; Prometheus/Redis from PROMETHEUS_URL/REDIS_URL, else
       started here for the session.
    2. A healthy ``make dev-cluster`` in .devcluster/: reused and left running.
    3. Otherwise (or with DEVCLUSTER_FRESH=1) a fresh cluster in a temporary state dir, stopped
       when the session ends.
    """
    ext = os.environ.get("E2E_KUBECONFIG")
    if not ext and os.environ.get("DEVCLUSTER_FRESH", "") in ("", "0"):
        existing = DevCluster.load(DEFAULT_STATE_DIR)
        if existing is not None and existing.heal():
            log(f"reusing the dev cluster in {DEFAULT_STATE_DIR}")
            yield existing
            return
    reap_orphaned_sessions()
    become_subreaper()  # daemons re-parent to this process, which reaps them when they stop
    prom, red = (os.environ.get("PROMETHEUS_URL"), os.environ.get("REDIS_URL")) if ext else (None, None)
    state_dir = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=SESSION_ROOT))
    c = DevCluster.start(
        state_dir,
        external_kubeconfig=Path(ext) if ext else None,
        prometheus_url=prom,
        redis_url=red,
        owner_pid=os.getpid(),
    )
    # make sure the processes go with us: SIGTERM unwinds like Ctrl-C, atexit covers odd exits
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            c.down()

    atexit.register(stop)
    restore = None
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
    ):
        restore = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield c
    finally:
        stop()
        atexit.unregister(stop)
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # KeyboardInterrupt, not SystemExit: pytest fails a test on SystemExit and carries on, but on
    # KeyboardInterrupt it stops the session and runs the fixtures' teardown
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt(f"signal {signum}")
