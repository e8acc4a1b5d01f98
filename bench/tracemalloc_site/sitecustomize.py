"""Put on PYTHONPATH of a benchmarked operator (bench/soak.py): with BENCH_TRACEMALLOC=<file>, trace
allocations from the start (BENCH_TRACEMALLOC_FRAMES frames per allocation, default 1) and, on
SIGUSR2, write the top allocation sites (by file and by line) there. The first signal's snapshot is
the baseline: later ones also write what grew since it (by line and by traceback), which is how the
soak names the sites of a slow growth. Only for such runs: tracing costs memory and CPU of its own."""

import os

_OUT = os.environ.get("BENCH_TRACEMALLOC")
if _OUT:
    import signal
    import tracemalloc
    from typing import Any

    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))
    _baseline: dict[str, Any] = {}

    def _dump(signum: int, frame: object) -> None:
        with open(_OUT, "a") as f:
            _write(f)
            f.write("=== end of snapshot\n")  # bench/soak.py waits for it

    def _write(f: Any) -> None:
        snap = tracemalloc.take_snapshot()
        total = sum(s.size for s in snap.statistics("filename"))
        overhead = tracemalloc.get_tracemalloc_memory() / 1e6
        f.write(f"=== snapshot: traced {total / 1e6:.1f} MB, tracemalloc's own {overhead:.1f} MB\n")
        for key in ("filename", "lineno"):
            f.write(f"--- top 40 by {key}\n")
            for stat in snap.statistics(key)[:40]:
                f.write(f"{stat.size / 1e6:8.2f} MB {stat.count:9d} blocks  {stat.traceback[0]}\n")
        base = _baseline.setdefault("snapshot", snap)
        if base is snap:
            return
        grown = sum(d.size_diff for d in snap.compare_to(base, "filename"))
        f.write(f"--- growth since the first snapshot: {grown / 1e6:+.2f} MB traced\n")
        for key in ("lineno", "traceback"):
            f.write(f"--- top 25 growth by {key}\n")
            for diff in snap.compare_to(base, key)[:25]:
                # Traceback indexes oldest first; the allocating line leads here
                where = diff.traceback.format(most_recent_first=True)
                f.write(f"{diff.size_diff / 1e6:+8.3f} MB {diff.count_diff:+9d} blocks {where[0]}\n")
                for line in where[1:] if key == "traceback" else []:
                    f.write(f"{'':30}{line}\n")

    signal.signal(signal.SIGUSR2, _dump)
