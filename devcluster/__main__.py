"""python -m devcluster up|down|status|env|build [--state-dir DIR]"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from devcluster import cluster


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    ap.add_argument("command", choices=["up", "down", "status", "env", "build", "_keep"])
    ap.add_argument("--state-dir", type=Path, default=cluster.DEFAULT_STATE_DIR)
    args = ap.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()

    if args.command == "_keep":
        return cluster.keep(state_dir)
    if args.command == "build":
        print(cluster.ensure_binaries(verify=True))
        return 0
    if args.command == "up":
        t0 = time.monotonic()
        running, reused = cluster.up(state_dir)
        (state_dir / "env").write_text(running.export_lines())
        how = "reused the running" if reused else f"started a new ({time.monotonic() - t0:.1f}s)"
        print(f"# {how} dev cluster; state in {state_dir}", file=sys.stderr)
        print(f"# Prometheus: {running.prometheus_url}   Redis: {running.redis_url}", file=sys.stderr)
        print(f"# source {state_dir / 'env'}   or:", file=sys.stderr)
        print(running.export_lines(), end="")
        return 0
    if args.command == "down":
        if cluster.down(state_dir):
            print(f"# dev cluster in {state_dir} stopped and removed", file=sys.stderr)
        else:
            print(f"# no dev cluster recorded in {state_dir}", file=sys.stderr)
        return 0
    c = cluster.DevCluster.load(state_dir)
    if c is None:
        print(f"no dev cluster recorded in {state_dir}", file=sys.stderr)
        return 1
    if args.command == "env":
        print(c.export_lines(), end="")
        return 0
    st = c.status()
    print(json.dumps(st, indent=2))
    return 0 if st["apiserver_ready"] and st["prometheus_ready"] and st["redis_ready"] else 1


if __name__ == "__main__":
    sys.exit(main())
