"""Put on PYTHONPATH of a benchmarked operator (bench/memory.py): with BENCH_TRACEMALLOC=<file>, trace
allocations from the start and, on SIGUSR2, write the top allocation sites (by file and by line) there.
Only for the memory breakdown run: tracing costs memory and CPU of its own."""

import os

_OUT = os.environ.get("BENCH_TRACEMALLOC")
if _OUT:
    import signal
    import tracemalloc

    tracemalloc.start(1)

    def _dump(signum: int, frame: object) -> None:
        snap = tracemalloc.take_snapshot()
        with open(_OUT, "a") as f:
            total = sum(s.size for s in snap.statistics("filename"))
            overhead = tracemalloc.get_tracemalloc_memory() / 1e6
            f.write(f"=== snapshot: traced {total / 1e6:.1f} MB, tracemalloc's own {overhead:.1f} MB\n")
            for key in ("filename", "lineno"):
                f.write(f"--- top 40 by {key}\n")
                for stat in snap.statistics(key)[:40]:
                    f.write(f"{stat.size / 1e6:8.2f} MB {stat.count:9d} blocks  {stat.traceback[0]}\n")

    signal.signal(signal.SIGUSR2, _dump)
