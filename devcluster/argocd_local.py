"""A real Argo CD against the dev cluster, run out of cluster as Argo CD's own local development does
(its Procfile: `ARGOCD_BINARY_NAME=argocd-<component> argocd ...` with `ARGOCD_FAKE_IN_CLUSTER=true`).

- the `argocd` binary built from Argo CD's module (devcluster/argocd.sh binary), the repo server, the
  application controller and the API server as three processes on loopback
- Redis from Debian (our own redis-server on a free loopback port, as the test session starts its own)
- a Git repository served on loopback by `git daemon` (git://127.0.0.1:<port>/<name>.git)
- Argo CD's CRDs from the same module, its namespace, argocd-cm = our patch (rendered for this
  namespace's API server user, `generate.py --user`), and ServiceAccounts `argocd-server` and
  `argocd-application-controller` whose tokens the components use: the API server writes as
  `system:serviceaccount:<namespace>:argocd-server`, the name the actions put in `by`.

Only processes started here are stopped here (by their pid).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from devcluster.cluster import REDIS_BIN, DevCluster, free_ports, redis_ping, wait_until

ROOT = Path(__file__).resolve().parents[1]
ARGOCD_SH = ROOT / "devcluster" / "argocd.sh"
COMPONENTS = ("argocd-repo-server", "argocd-application-controller", "argocd-server")
ROLES = ("argocd-server", "argocd-application-controller")


def argocd_binary() -> tuple[Path, Path]:
    """(the argocd binary, Argo CD's module copy), built or reused by devcluster/argocd.sh."""
    env = dict(os.environ)
    if shutil.which("go") is None and Path("/usr/local/go/bin/go").exists():
        env["PATH"] = f"{env['PATH']}:/usr/local/go/bin"
    binary = subprocess.run(["bash", str(ARGOCD_SH), "binary"], stdout=subprocess.PIPE, text=True, env=env, check=True)
    src = subprocess.run(["bash", str(ARGOCD_SH), "src"], stdout=subprocess.PIPE, text=True, env=env, check=True)
    return Path(binary.stdout.strip().splitlines()[-1]), Path(src.stdout.strip().splitlines()[-1])


class LocalArgoCD:
    """Argo CD in namespace `namespace` of `cluster`; state, logs and the Git repository under `workdir`."""

    def __init__(self, cluster: DevCluster, namespace: str, workdir: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.workdir = workdir
        self.binary, self.src = argocd_binary()
        self.user = f"system:serviceaccount:{namespace}:argocd-server"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        ports = free_ports(7)
        self.redis_port, self.git_port, self.repo_port, self.api_port = ports[:4]
        self.metrics_ports = dict(zip(COMPONENTS, ports[4:], strict=True))
        self.cli_config = workdir / "argocd-cli.yaml"

    # --- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd or self.workdir,
                start_new_session=True,
            )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            del self.procs[name]

    def __enter__(self) -> LocalArgoCD:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- setup --------------------------------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._kube_objects()
        kubeconfigs = {role: self._kubeconfig(role) for role in ROLES}
        self._spawn(
            "redis",
            [REDIS_BIN, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--daemonize", "no"],
        )  # fmt: skip
        wait_until("Argo CD's redis", lambda: redis_ping(self.redis_port), timeout=30)
        self.repos = self.workdir / "git"
        self.repos.mkdir(exist_ok=True)
        self._spawn(
            "git-daemon",
            ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", f"--base-path={self.repos}",
             "--listen=127.0.0.1", f"--port={self.git_port}", str(self.repos)],
        )  # fmt: skip
        redis = f"127.0.0.1:{self.redis_port}"
        repo_server = f"127.0.0.1:{self.repo_port}"
        for d in ("tls", "ssh", "gpg/keys", "gpg/source", "tmp", "home"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir / "home"),
            "TMPDIR": str(self.workdir / "tmp"),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_TLS_DATA_PATH": str(self.workdir / "tls"),
            "ARGOCD_SSH_DATA_PATH": str(self.workdir / "ssh"),
            "ARGOCD_GNUPGHOME": str(self.workdir / "gpg" / "keys"),
            "ARGOCD_GPG_DATA_PATH": str(self.workdir / "gpg" / "source"),
            "ARGOCD_GPG_ENABLED": "false",
        }
        common = ["--loglevel", "info", "--redis", redis]
        self._spawn(
            "argocd-repo-server",
            [str(self.binary), *common, "--port", str(self.repo_port),
             "--metrics-port", str(self.metrics_ports["argocd-repo-server"])],
            env={**base, "ARGOCD_BINARY_NAME": "argocd-repo-server"},
        )  # fmt: skip
        self._spawn(
            "argocd-application-controller",
            [str(self.binary), *common, "--repo-server", repo_server, "--namespace", self.namespace,
             "--metrics-port", str(self.metrics_ports["argocd-application-controller"]),
             "--app-resync", "20", "--self-heal-timeout-seconds", "2"],
            env={**base, "ARGOCD_BINARY_NAME": "argocd-application-controller", "HOSTNAME": "argocd-controller-0",
                 "KUBECONFIG": str(kubeconfigs["argocd-application-controller"])},
        )  # fmt: skip
        self._spawn(
            "argocd-server",
            [str(self.binary), *common, "--repo-server", repo_server, "--namespace", self.namespace, "--insecure",
             "--port", str(self.api_port), "--metrics-port", str(self.metrics_ports["argocd-server"]),
             "--staticassets", str(self.workdir / "tmp")],
            env={**base, "ARGOCD_BINARY_NAME": "argocd-server", "KUBECONFIG": str(kubeconfigs["argocd-server"])},
        )  # fmt: skip

        def api_up() -> bool:
            self._alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until("Argo CD's API server", api_up, timeout=120, interval=0.5)
        wait_until("the initial admin password", lambda: self._admin_password() is not None, timeout=60)
        self.argocd(
            "login", f"127.0.0.1:{self.api_port}", "--plaintext", "--username", "admin",
            "--password", str(self._admin_password()),
        )  # fmt: skip

    def _alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")

    def _kube_objects(self) -> None:
        k = self.cluster.kubectl
        names = ("application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml")
        crds = [str(self.src / "manifests" / "crds" / f) for f in names]
        k("apply", "--server-side", "--force-conflicts", *(a for f in crds for a in ("-f", f)))
        # right after the apply a CRD may have no status.conditions yet, and `kubectl wait` errors then
        files = [a for f in crds for a in ("-f", f)]
        wait_until(
            "Argo CD's CRDs", lambda: k("wait", "--for=condition=Established", "--timeout=5s", *files, check=False)
            .returncode == 0, timeout=60,
        )  # fmt: skip
        ns = self.namespace
        k("create", "namespace", ns)
        patch = subprocess.run(
            [sys.executable, str(ROOT / "manifests" / "argocd" / "generate.py"), "--user", self.user, "--out",
             str(self.workdir / "argocd-cm-patch.yaml")], check=True,
        )  # fmt: skip
        assert patch.returncode == 0
        cm = yaml.safe_load((self.workdir / "argocd-cm-patch.yaml").read_text())
        cm["metadata"]["namespace"] = ns
        cm["data"]["timeout.reconciliation"] = "10s"
        labels = {"app.kubernetes.io/part-of": "argocd"}
        docs: list[dict[str, Any]] = [
            cm,
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "argocd-rbac-cm", "namespace": ns, "labels": labels}},
            {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": "argocd-secret", "namespace": ns, "labels": labels}},
        ]  # fmt: skip
        for role in ROLES:
            docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": role, "namespace": ns}})
            docs.append(
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": f"{ns}-{role}"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                 "subjects": [{"kind": "ServiceAccount", "name": role, "namespace": ns}]}
            )  # fmt: skip
        k("apply", "-f", "-", input=yaml.safe_dump_all(docs))

    def _kubeconfig(self, role: str) -> Path:
        """A kubeconfig for ServiceAccount `role`: the component acts as that user, as in-cluster."""
        token = self.cluster.kubectl("create", "token", role, "-n", self.namespace, "--duration=4h").stdout.strip()
        view = json.loads(self.cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        cluster = view["clusters"][0]
        config = {
            "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
            "users": [{"name": role, "user": {"token": token}}],
            "contexts": [{"name": role,
                          "context": {"cluster": cluster["name"], "user": role, "namespace": self.namespace}}],
            "current-context": role,
        }  # fmt: skip
        path = self.workdir / f"{role}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _admin_password(self) -> str | None:
        r = self.cluster.kubectl(
            "get", "secret", "argocd-initial-admin-secret", "-n", self.namespace, "-o", "jsonpath={.data.password}",
            check=False,
        )  # fmt: skip
        return base64.b64decode(r.stdout).decode() if r.returncode == 0 and r.stdout else None

    # --- use ----------------------------------------------------------------------------------

    def argocd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The argocd CLI against this API server, logged in as admin."""
        result = subprocess.run(
            [str(self.binary), "--config", str(self.cli_config), *args],
            capture_output=True, text=True, env={**os.environ, "HOME": str(self.workdir / "home")}, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"argocd {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def api(self, path: str) -> Any:
        """GET Argo CD's REST API (`/api/v1/...`) as the logged-in admin."""
        config = yaml.safe_load(self.cli_config.read_text())
        token = config["users"][0]["auth-token"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def git_repo(self, name: str, files: dict[str, str]) -> str:
        """A bare repository `name` holding `files` (one commit on main), served by git daemon; its URL."""
        bare = self.repos / f"{name}.git"
        work = self.workdir / f"{name}-work"
        git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main"]
        subprocess.run([*git, "init", "-q", "--bare", str(bare)], check=True)
        subprocess.run([*git, "init", "-q", str(work)], check=True)
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "manifests"], check=True)
        subprocess.run([*git, "-C", str(work), "push", "-q", str(bare), "HEAD:main"], check=True)
        url = f"git://127.0.0.1:{self.git_port}/{name}.git"
        wait_until("git daemon", lambda: subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0,
                   timeout=30)  # fmt: skip
        return url


def wait_for(what: str, pred: Any, timeout: float = 120.0, interval: float = 1.0) -> Any:
    """Like wait_until, but returns the predicate's last truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
