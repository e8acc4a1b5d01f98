"""One real node beside the kwok nodes: containerd + runc + bridge CNI (Debian), kubelet and kube-proxy
built from the same Kubernetes source as the control plane (devcluster/build.sh).

The operator, the dashboard and the e2e quoters run here as real pods; the many fake strategy pods stay on
the kwok nodes (tainted ``kwok.x-k8s.io/node=fake:NoSchedule``; only the fake-workload builders tolerate it).

Machine-wide effects are recorded (machine_state.snapshot) in the work dir before anything changes and
undone by ``teardown`` (idempotent; after a crash, the next start or down finds the record). One real
node per machine: a flock on LOCK_PATH, whose content names the work dir holding the record.
Standard library only. See devcluster/README.md and /work/shared/recipes/real-node.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from devcluster import machine_state as ms

NODE_NAME = "real-node"
NODE_LABELS = {"type": "real", "strategyrollouts.io/real-node": "true"}
BRIDGE = "cni0"
BRIDGE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
CGROUP_NAME = "strategy-rollouts-node"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
CNI_BIN_DIR = "/usr/lib/cni"
LOCK_PATH = Path(os.environ.get("DEVCLUSTER_REAL_NODE_LOCK", "/run/lock/strategy-rollouts-real-node.lock"))
RECORD = "machine-before.json"
NO_REGISTRY_PORT = 9  # discard: nothing listens on loopback's port 9
# The kwok nodes' taint; only tests/integration/workloads.py, bench/harness.py and demo/run.py `deployment`
# (and the few tests that build a kwok pod spec of their own) tolerate it.
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
KWOK_NODE_SELECTOR = {"type": "kwok"}
REQUIRED_HOST_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "socat", "ip", "iptables", "umount")

Log = Callable[[str], None]


class RealNodeUnavailable(RuntimeError):
    """The real node cannot run on this machine (the message says why and how to opt out)."""


def enabled() -> bool:
    """On unless DEVCLUSTER_REAL_NODE=0 (for machines where it truly cannot run)."""
    return os.environ.get("DEVCLUSTER_REAL_NODE", "1") not in ("0", "false", "no")


def check_can_run(bin_dir: Path) -> None:
    """Raise RealNodeUnavailable naming everything that is missing."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the kubelet, containerd and the bridge need it)")
    missing += [f"{b} on PATH (make system-deps)" for b in REQUIRED_HOST_BINARIES if shutil.which(b) is None]
    missing += [
        f"{bin_dir}/{b} (make binaries)" for b in ("kubelet", "kube-proxy", "pause") if not (bin_dir / b).exists()
    ]
    missing += [
        f"{CNI_BIN_DIR}/{p} (containernetworking-plugins)"
        for p in ("bridge", "host-local", "loopback")
        if not Path(CNI_BIN_DIR, p).exists()
    ]
    if not Path("/sys/fs/cgroup").is_dir():
        missing.append("/sys/fs/cgroup")
    if missing:
        raise RealNodeUnavailable(
            "the real node cannot run here; missing: "
            + "; ".join(missing)
            + ". Set DEVCLUSTER_REAL_NODE=0 to run the cluster with kwok nodes only (real-pod tests then fail)."
        )


# ---------------------------------------------------------------------------------------------
# the lock


class NodeLock:
    """flock(LOCK_PATH): held for the node's life by the process that started it (keeper or pytest)."""

    def __init__(self) -> None:
        self._f: IO[str] | None = None

    def acquire(self, work_dir: Path) -> Path | None:
        """Take the lock or raise RealNodeUnavailable naming its holder; returns the work dir the lock
        file named before (a previous node, possibly crashed, whose record may need restoring)."""
        if self._f is not None:
            return work_dir  # ours already (a restart in the same process)
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        f = LOCK_PATH.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RealNodeUnavailable(
                f"another real-node cluster runs on this machine (lock {LOCK_PATH} held by {holder}); "
                "stop it (`make dev-cluster-down`, or end that test session) or set DEVCLUSTER_REAL_NODE=0"
            ) from None
        f.seek(0)
        previous: Path | None = None
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            previous = Path(json.loads(f.read())["work_dir"])
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "work_dir": str(work_dir)}))
        f.flush()
        self._f = f
        return previous

    def release(self) -> None:
        if self._f is not None:
            self._f.close()  # closing drops the flock
            self._f = None


# ---------------------------------------------------------------------------------------------
# images


IMAGES = ("strategy-rollouts", "quoter")


def build_images(cache: Path, names: Iterable[str] = IMAGES) -> dict[str, Path]:
    """`make image` (devcluster/image.sh: cached base, buildah layer cache): the archives of
    strategy-rollouts:dev and quoter:dev (or the `names` given), by name."""
    wanted = list(names)
    if unknown := set(wanted) - set(IMAGES):
        raise ValueError(f"unknown images {sorted(unknown)}; known: {IMAGES}")
    script = Path(__file__).resolve().parent / "image.sh"
    # the caller imports into its own node
    env = {**os.environ, "DEVCLUSTER_IMAGE_NO_IMPORT": "1", "DEVCLUSTER_IMAGES": " ".join(wanted)}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=3600, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"devcluster/image.sh failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return {name: cache / "images" / f"{name}-dev.tar" for name in wanted}


# ---------------------------------------------------------------------------------------------
# the pause image (no registry: an OCI archive built here around devcluster/gowrap/pause)


def pause_archive(pause_bin: Path, out: Path) -> Path:
    """An OCI image archive tagged PAUSE_IMAGE holding the static pause program as /pause."""

    def blob(data: bytes) -> tuple[str, bytes]:
        return "sha256:" + hashlib.sha256(data).hexdigest(), data

    layer_io = io.BytesIO()
    with tarfile.open(fileobj=layer_io, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("pause")
        data = pause_bin.read_bytes()
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        t.addfile(info, io.BytesIO(data))
    layer_digest, layer = blob(layer_io.getvalue())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    cfg_digest, cfg = blob(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
    }
    man_digest, man = blob(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": man_digest,
                "size": len(man),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": PAUSE_IMAGE,
                    "org.opencontainers.image.ref.name": PAUSE_IMAGE.rsplit(":", 1)[1],
                },
            }
        ],
    }
    with tarfile.open(out, "w") as t:
        for name, data in (
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index).encode()),
            *(
                (f"blobs/sha256/{d.split(':')[1]}", b)
                for d, b in ((layer_digest, layer), (cfg_digest, cfg), (man_digest, man))
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    return out


# ---------------------------------------------------------------------------------------------
# configuration files


def containerd_config(w: Path) -> str:
    return f"""version = 2
root = "{w}/containerd/root"
state = "{w}/containerd/state"
[grpc]
  address = "{w}/containerd.sock"
[ttrpc]
  address = "{w}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # the VM lacks CAP_SYS_RESOURCE: without this every sandbox fails ("can't get final child's PID from pipe")
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{w}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{w}/cni/net.d"
"""


def cni_config(w: Path) -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0",
        "name": "strategy-rollouts-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": BRIDGE_IP}]],
                    # only the service range: pods reach nothing beyond the bridge and the services
                    "routes": [{"dst": SERVICE_CIDR}],
                    "dataDir": f"{w}/cni/ipam",
                },
            }
        ],
    }


def kubelet_config(w: Path, ca: Path, port: int, healthz: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_NAME}",
        "containerRuntimeEndpoint": f"unix://{w}/containerd.sock",
        "address": BRIDGE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "failSwapOn": False,
        # the eviction manager cannot read disk stats here
        "localStorageCapacityIsolation": False,
        "evictionHard": {"nodefs.available": "1%", "imagefs.available": "1%", "memory.available": "100Mi"},
        "imageGCHighThresholdPercent": 100,
        "podLogsDir": f"{w}/pod-logs",
        "resolvConf": f"{w}/resolv.conf",
        "clusterDomain": "cluster.local",
        "shutdownGracePeriod": "0s",
        "syncFrequency": "10s",
        "registerNode": True,
        "serializeImagePulls": False,
    }


def kube_proxy_config(kubeconfig: Path, healthz: int, metrics: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "nodePortAddresses": [f"{BRIDGE_IP}/32"],
        "hostnameOverride": NODE_NAME,
        "oomScoreAdj": 0,
        # zeros: kube-proxy leaves the machine-wide conntrack sysctls alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False},
    }


# ---------------------------------------------------------------------------------------------
# the node


class RealNode:
    """The node's processes and machine changes, all under ``work_dir`` (recorded in its state.json)."""

    def __init__(self, work_dir: Path, bin_dir: Path, log: Log) -> None:
        self.w = Path(work_dir)
        self.bin_dir = Path(bin_dir)
        self.log = log
        self.lock = NodeLock()

    # -- state -------------------------------------------------------------------------------

    @property
    def record_path(self) -> Path:
        return self.w / RECORD

    def _pids(self) -> dict[str, int]:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return dict(json.loads((self.w / "pids.json").read_text()))
        return {}

    def _save_pid(self, name: str, pid: int) -> None:
        pids = self._pids()
        pids[name] = pid
        ms.write_record(self.w / "pids.json", pids)

    def needles(self) -> tuple[str, ...]:
        """Strings in the command line of every process of this node (for finding them after a crash)."""
        return (str(self.w), f"bind={BRIDGE_IP}")

    def expose(self, port: int, spawn: Callable[[list[str], Path], int]) -> str:
        """Make 127.0.0.1:port (Prometheus, Redis on the host) reachable from pods at BRIDGE_IP:port; returns
        "BRIDGE_IP:port". Stopped with the node."""
        spawn_ = [
            "socat",
            f"TCP-LISTEN:{port},bind={BRIDGE_IP},reuseaddr,fork",
            f"TCP:127.0.0.1:{port}",
        ]
        self._save_pid(f"expose-{port}", spawn(spawn_, self.w / "logs" / f"expose-{port}.log"))
        return f"{BRIDGE_IP}:{port}"

    def alive(self) -> bool:
        """Its kubelet, kube-proxy and containerd are running (a reused cluster whose node died is rebuilt)."""
        pids = self._pids()
        return all(_state(pids.get(n, 0)) not in ("", "Z", "X") for n in ("kubelet", "kube-proxy", "containerd"))

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["ctr", "-a", str(self.w / "containerd.sock"), "--connect-timeout=3s", "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {r.stderr.strip()}")
        return r

    def import_image(self, archive: Path) -> None:
        """Load an image archive (docker-archive or oci-archive) into the node's containerd (k8s.io)."""
        self.ctr("images", "import", "--platform", "linux/amd64", str(archive), timeout=600)

    # -- start -------------------------------------------------------------------------------

    def start(
        self,
        *,
        kubeconfig: Path,
        ca: Path,
        apiserver_port: int,
        ports: list[int],
        spawn: Callable[[list[str], Path], int],
        kubectl: Callable[..., Any],
    ) -> float:
        """Start the node and wait until it is Ready; returns the seconds it took. On failure the caller
        runs teardown()."""
        t0 = time.monotonic()
        check_can_run(self.bin_dir)
        self.w.mkdir(parents=True, exist_ok=True)
        previous = self.lock.acquire(self.w)
        # a node that died without its teardown (its record is still there): restore the machine first
        for old in {previous, self.w} - {None}:
            assert old is not None
            if (old / RECORD).exists():
                self.log(f"found the record of an earlier real node in {old}: restoring the machine first")
                RealNode(old, self.bin_dir, self.log).teardown(release_lock=False)
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "logs", "runc"):
            (self.w / sub).mkdir(parents=True, exist_ok=True)
        # the record, before anything on the machine changes
        ms.write_record(self.record_path, ms.snapshot(CGROUP_NAME))
        logs = self.w / "logs"

        self._make_cgroups()
        for argv in (
            ["ip", "link", "add", BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE],
            ["ip", "link", "set", BRIDGE, "up"],
        ):
            subprocess.run(argv, capture_output=True, text=True, check=True)

        (self.w / "containerd.toml").write_text(containerd_config(self.w))
        (self.w / "cni" / "net.d" / "10-node.conflist").write_text(json.dumps(cni_config(self.w), indent=1))
        # no registry: containerd's pulls go to a proxy on a closed loopback port, so a pod whose image was not
        # imported fails at once, with no lookup of or connection to the registry (pods use imagePullPolicy Never)
        no_registry = [f"{v}=http://127.0.0.1:{NO_REGISTRY_PORT}" for v in ("HTTPS_PROXY", "HTTP_PROXY")]
        argv = ["env", *no_registry, "NO_PROXY=", "containerd", f"--config={self.w}/containerd.toml"]
        self._save_pid("containerd", spawn(argv, logs / "containerd.log"))
        _wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, 30)
        self.import_image(pause_archive(self.bin_dir / "pause", self.w / "pause.tar"))

        # the `kubernetes` Service's endpoint: the apiserver listens on loopback only
        self._save_pid(
            "forwarder",
            spawn(
                [
                    "socat",
                    f"TCP-LISTEN:{apiserver_port},bind={BRIDGE_IP},reuseaddr,fork",
                    f"TCP:127.0.0.1:{apiserver_port}",
                ],
                logs / "forwarder.log",
            ),
        )

        kubelet_port, kubelet_healthz, proxy_healthz, proxy_metrics = ports[:4]
        (self.w / "resolv.conf").write_text(
            f"# no DNS in this cluster: pods use service and pod IPs\nnameserver {BRIDGE_IP}\n"
        )
        (self.w / "kubelet.json").write_text(json.dumps(kubelet_config(self.w, ca, kubelet_port, kubelet_healthz)))
        self._save_pid(
            "kubelet",
            spawn(
                [
                    str(self.bin_dir / "kubelet"),
                    f"--config={self.w}/kubelet.json",
                    f"--kubeconfig={kubeconfig}",
                    f"--node-ip={BRIDGE_IP}",
                    f"--hostname-override={NODE_NAME}",
                    f"--root-dir={self.w}/kubelet",
                    f"--cert-dir={self.w}/kubelet/pki",
                    "--node-labels=" + ",".join(f"{k}={v}" for k, v in NODE_LABELS.items()),
                    "--v=1",
                ],
                logs / "kubelet.log",
            ),
        )
        (self.w / "kube-proxy.json").write_text(json.dumps(kube_proxy_config(kubeconfig, proxy_healthz, proxy_metrics)))
        self._save_pid(
            "kube-proxy",
            spawn(
                [str(self.bin_dir / "kube-proxy"), f"--config={self.w}/kube-proxy.json", "--v=1"],
                logs / "kube-proxy.log",
            ),
        )
        self._apiserver_endpoint(kubectl, apiserver_port)
        _wait(
            "the kubelet to register the node",
            lambda: kubectl("get", "node", NODE_NAME, check=False).returncode == 0,
            120,
        )
        kubectl("wait", "--for=condition=Ready", f"node/{NODE_NAME}", "--timeout=120s")
        took = time.monotonic() - t0
        self.log(f"real node {NODE_NAME} Ready in {took:.1f}s (logs in {logs})")
        return took

    def _make_cgroups(self) -> None:
        """cgroupRoot for the kubelet in every v1 hierarchy (cpuset needs its cpus/mems copied in)."""
        for h in sorted(ms.CGROUP_ROOT.iterdir()):
            if h.is_dir() and not h.is_symlink():
                d = h / CGROUP_NAME
                d.mkdir(exist_ok=True)
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if (h / f).exists():
                        (d / f).write_text((h / f).read_text())

    @staticmethod
    def _apiserver_endpoint(kubectl: Callable[..., Any], port: int) -> None:
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes-real-node",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "devcluster.strategy-rollouts",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [BRIDGE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(slice_))

    # -- stop --------------------------------------------------------------------------------

    def delete_pods(self, kubectl: Callable[..., Any]) -> None:
        """While the control plane is up: force-delete the node's pods and let the kubelet tear their
        sandboxes (netns, veths, mounts) down through CNI."""
        if not self.alive():
            return  # nothing to drain: teardown() kills and cleans up what is left
        kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            f"--field-selector=spec.nodeName={NODE_NAME}",
            "--force",
            "--grace-period=0",
            "--wait=false",
            check=False,
        )
        with contextlib.suppress(TimeoutError):
            # the CRI stops a sandbox's task only after its network is torn down (CNI DEL)
            _wait(
                "the node's sandboxes to stop",
                lambda: self.ctr("tasks", "list", "-q", check=False, timeout=10).stdout.strip() == "",
                30,
            )

    def teardown(self, *, release_lock: bool = True) -> None:
        """Stop every process of the node and undo what it changed on the machine, from the record.
        Idempotent; works after a crash (the processes dead or alive)."""
        record: dict[str, Any] | None = None
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            record = json.loads(self.record_path.read_text())
        pids = self._pids()
        for name in ("kubelet", "kube-proxy", "forwarder"):
            _stop(pids.get(name), self.needles())
        if (self.bin_dir / "kube-proxy").exists():  # kube-proxy's own cleanup of its iptables rules
            subprocess.run(
                [str(self.bin_dir / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60, check=False
            )
        # the pods' processes, wherever their shims are
        for _ in range(50):
            left = ms.cgroup_pids(CGROUP_NAME)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if pids.get("containerd"):
            _stop(pids["containerd"], self.needles())
        for line in ms.processes(self.needles()):  # shims, and anything else that names our work dir
            _stop(int(line.split()[0]), self.needles())
        mine = (str(self.w), *ms.NETNS_DIRS, "/run/containerd", "/var/lib/kubelet", "/var/lib/cni")
        if record is not None:
            ms.unmount_under(mine, record, self.log)
            ms.remove_netns(record, self.log)
            ms.remove_chains(record, self.log)
            ms.remove_links(record, self.log)
            ms.remove_cgroups(CGROUP_NAME, self.log)
            ms.remove_paths(record, self.log)
            ms.restore_sysctls(record, self.log)
            changed = ms.differences(record, ms.snapshot(CGROUP_NAME), mine)
            if changed:
                raise RuntimeError(
                    f"the real node's teardown left the machine changed (record kept in "
                    f"{self.record_path}): {json.dumps(changed)[:2000]}"
                )
            self.record_path.unlink()
            self.log("real node stopped; the machine is as recorded before it started")
        with contextlib.suppress(FileNotFoundError):
            (self.w / "pids.json").unlink()
        if release_lock:
            self.lock.release()


def _wait(what: str, pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _stop(pid: int | None, needles: tuple[str, ...], timeout: float = 10) -> None:
    """SIGTERM then SIGKILL pid, only if its command line still names this node."""
    if not pid:
        return
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return
    if not any(n in cmd for n in needles):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        if _state(pid) in ("Z", "X", ""):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
