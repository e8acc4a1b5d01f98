"""What the real node changes on the machine, recorded before it starts and put back after it stops.

The kubelet writes machine-wide sysctls (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops),
the bridge plugin turns on forwarding, kubelet and kube-proxy add iptables chains, and the node adds an
interface, network namespaces, mounts, cgroups and a few files outside its work directory. A
``snapshot()`` taken before anything changes is the record; ``restore()`` undoes every difference that
is ours and is safe to run any number of times, also after a crash. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

# sysctls that move by themselves (counters, random values): never compared, never written
VOLATILE_SYSCTLS = (
    "fs.dentry-state",
    "fs.file-nr",
    "fs.inode-nr",
    "fs.inode-state",
    "fs.aio-nr",
    "fs.quota.",
    "kernel.ns_last_pid",
    "kernel.random.",
    "kernel.pty.nr",
    "net.netfilter.nf_conntrack_count",
)
# per-interface keys of interfaces the node creates come and go with them
OWN_INTERFACE_PREFIXES = ("cni0", "veth")
# iptables chains the kubelet, kube-proxy and the CNI plugins create
OWN_CHAIN_PREFIXES = ("KUBE-", "CNI-")
IPTABLES = ("iptables", "ip6tables")
# files outside the work dir the node's components create (hard-coded paths in kubelet, CNI, containerd)
OUTSIDE_PATHS = (
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/etc/cni",
    "/etc/cni/net.d/cni.lock",  # libcni's lock, also when /etc/cni was there before
    "/run/containerd",
    "/var/run/netns",
    "/run/netns",
    "/opt/containerd",
)
NETNS_DIRS = ("/run/netns", "/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _is_volatile(key: str) -> bool:
    if key.startswith(VOLATILE_SYSCTLS):
        return True
    parts = key.split(".")
    # net.ipv4.conf.<if>.x, net.ipv6.conf.<if>.x, net.ipv4.neigh.<if>.x
    return len(parts) > 3 and parts[0] == "net" and parts[3].startswith(OWN_INTERFACE_PREFIXES)


def sysctls() -> dict[str, str]:
    """Every readable sysctl (as `sysctl -a` prints them), minus the volatile ones."""
    out: dict[str, str] = {}
    base = Path("/proc/sys")
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            p = Path(dirpath) / f
            key = str(p.relative_to(base)).replace("/", ".")
            if _is_volatile(key):
                continue
            try:
                out[key] = " ".join(p.read_text().split())
            except OSError:  # write-only (e.g. net.ipv4.route.flush) or permission
                continue
    return out


def _run(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    return r.stdout if r.returncode == 0 else ""


def iptables_rules(tool: str) -> list[str]:
    """The rule set as `<table> <line>` lines, without counters and comments (stable across runs).
    A table that holds only its built-in chains with policy ACCEPT and no rule counts as absent: iptables-nft
    cannot delete a table, and an empty one filters nothing."""
    out: list[str] = []
    table = ""
    lines: list[str] = []
    for raw in _run(f"{tool}-save").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table, lines = line[1:], []
            continue
        if line == "COMMIT":
            if any(not (ln.startswith(":") and ln.split()[1] == "ACCEPT") for ln in lines):
                out.extend(f"{table} {ln}" for ln in lines)
            continue
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            line = f":{name} {policy}"
        lines.append(line)
    return out


def links() -> list[str]:
    return sorted(ln.split(":")[1].strip().split("@")[0] for ln in _run("ip", "-o", "link", "show").splitlines())


def netns() -> list[str]:
    names: set[str] = set()
    for d in NETNS_DIRS:
        with contextlib.suppress(OSError):
            names.update(os.listdir(d))
    return sorted(names)


def mounts() -> list[str]:
    return sorted({line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()})


def cgroups(name: str) -> list[str]:
    """The node's cgroup directories (ours: /sys/fs/cgroup/<hierarchy>/<name>, any depth)."""
    out: list[str] = []
    for h in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        top = h / name
        if top.is_dir():
            out.extend(str(Path(d)) for d, _, _ in os.walk(top))
    return out


def processes(needles: tuple[str, ...]) -> list[str]:
    """Command lines of live processes that contain any of needles."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmd and any(n in cmd for n in needles):
                out.append(f"{pid} {cmd.strip()}")
    return out


def snapshot(cgroup_name: str) -> dict[str, Any]:
    """What the machine looks like now, in the terms restore() and the teardown test compare."""
    return {
        "sysctls": sysctls(),
        "iptables": {tool: iptables_rules(tool) for tool in IPTABLES},
        "links": links(),
        "netns": netns(),
        "mounts": mounts(),
        "paths": {p: os.path.lexists(p) for p in OUTSIDE_PATHS},
        "cgroups": cgroups(cgroup_name),
    }


def write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, path)


def differences(before: dict[str, Any], after: dict[str, Any], mine: tuple[str, ...] = ()) -> dict[str, Any]:
    """What differs between two snapshots (empty: the machine is as it was).

    Sysctls compare on the keys both have (a kernel module loaded meanwhile adds keys; nothing unloads it).
    With ``mine`` (path prefixes of the node), only mounts below them and the node's interfaces count, so
    that another job's mount on this shared machine does not fail the node's teardown."""
    diff: dict[str, Any] = {}
    sb, sa = before["sysctls"], after["sysctls"]
    changed = {k: (sb[k], sa[k]) for k in sorted(set(sb) & set(sa)) if sb[k] != sa[k]}
    if changed:
        diff["sysctls"] = changed
    for tool in IPTABLES:
        b, a = set(before["iptables"][tool]), set(after["iptables"][tool])
        if a != b:
            diff[tool] = {"added": sorted(a - b), "removed": sorted(b - a)}
    for key in ("links", "netns", "mounts", "cgroups"):
        b, a = set(before[key]), set(after[key])
        if mine and key == "mounts":
            b, a = {m for m in b if m.startswith(mine)}, {m for m in a if m.startswith(mine)}
        if mine and key == "links":
            b, a = (
                {n for n in b if n.startswith(OWN_INTERFACE_PREFIXES)},
                {n for n in a if n.startswith(OWN_INTERFACE_PREFIXES)},
            )
        if a != b:
            diff[key] = {"added": sorted(a - b), "removed": sorted(b - a)}
    if before["paths"] != after["paths"]:
        diff["paths"] = {p: (before["paths"].get(p), after["paths"].get(p)) for p in OUTSIDE_PATHS}
    return diff


# ---------------------------------------------------------------------------------------------
# restore


def restore_sysctls(record: dict[str, Any], log: Any) -> None:
    now = sysctls()
    for key, value in record["sysctls"].items():
        if key in now and now[key] != value:
            with contextlib.suppress(OSError):
                Path("/proc/sys", *key.split(".")).write_text(value)
                log(f"restored sysctl {key} = {value} (was {now[key]})")


def _own_chain(name: str) -> bool:
    return name.startswith(OWN_CHAIN_PREFIXES)


def remove_chains(record: dict[str, Any], log: Any) -> None:
    """Delete every rule that jumps to one of our chains and every chain of ours the record lacks."""
    for tool in IPTABLES:
        keep = set(record["iptables"][tool])
        table = ""
        jumps: list[tuple[str, str]] = []
        chains: list[tuple[str, str]] = []
        for raw in _run(f"{tool}-save").splitlines():
            line = raw.strip()
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                name = line[1:].split()[0]
                if _own_chain(name) and f"{table} :{name} -" not in keep:
                    chains.append((table, name))
            elif line.startswith("-A "):
                chain = line.split()[1]
                jumps_to_ours = not _own_chain(chain) and any(f" {p}" in line for p in OWN_CHAIN_PREFIXES)
                if jumps_to_ours and f"{table} {line}" not in keep:
                    jumps.append((table, line))
        for table, line in jumps:
            subprocess.run([tool, "-w", "-t", table, *shlex.split("-D" + line[2:])], capture_output=True, check=False)
        for op in ("-F", "-X"):
            for table, name in chains:
                subprocess.run([tool, "-w", "-t", table, op, name], capture_output=True, check=False)
        if jumps or chains:
            log(f"{tool}: removed {len(jumps)} jump rules and {len(chains)} chains")


def remove_links(record: dict[str, Any], log: Any) -> None:
    for name in links():
        if name.startswith(OWN_INTERFACE_PREFIXES) and name not in record["links"]:
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
            log(f"deleted interface {name}")


def unmount_under(prefixes: tuple[str, ...], record: dict[str, Any], log: Any) -> None:
    """Lazily unmount every mount below prefixes that the record does not have, deepest first."""
    keep = set(record["mounts"])
    for m in sorted(mounts(), key=len, reverse=True):
        if m not in keep and m.startswith(prefixes):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)


def remove_netns(record: dict[str, Any], log: Any) -> None:
    for d in NETNS_DIRS:
        with contextlib.suppress(OSError):
            for name in os.listdir(d):
                if name not in record["netns"]:
                    p = f"{d}/{name}"
                    subprocess.run(["umount", "-l", p], capture_output=True, check=False)
                    with contextlib.suppress(OSError):
                        os.unlink(p)
                    log(f"removed netns {p}")


def remove_paths(record: dict[str, Any], log: Any) -> None:
    for p in OUTSIDE_PATHS:
        if not record["paths"].get(p) and os.path.lexists(p):
            if os.path.islink(p):
                os.unlink(p)
            else:
                shutil.rmtree(p, ignore_errors=True)
            log(f"removed {p}")


def remove_cgroups(name: str, log: Any) -> None:
    """rmdir the node's cgroups depth-first (their processes must be gone: see kill_cgroup_procs)."""
    for d in sorted(cgroups(name), key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for d in cgroups(name):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(x) for x in Path(d, "cgroup.procs").read_text().split())
    return pids
