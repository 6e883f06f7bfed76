"""Benchmark: independent units on Dask, 2 workers against 1 (prints figures only).

1. SBC (default): the reference Gibbs study (``--studies``), ``--replications`` replications,
   as Dask tasks on a local cluster of 1 worker and of 2 workers, timed side by side in one
   run, medians of ``--repeats``. The cluster start is inside the timing (it is part of what a
   user waits for). Goal: 2 workers >= 1.6x faster than 1.
2. ``--report``: ``crosscheck report`` on every built-in case, serially in one process and on 2
   Dask workers, each with an empty result cache of its own (the PyTensor compile cache is
   shared, so the second run does not pay the compile the first did: run ``--report-order``
   both ways to see that effect). This takes tens of minutes.

Usage::

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/bench_parallel.py [--replications 100] [--repeats 3] [--report]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("reference-gibbs",)


def sbc_seconds(workers: int, replications: int, studies=STUDIES) -> float:
    from comparisons import sbc_studies
    from comparisons.parallel import Runner

    t0 = time.perf_counter()
    with Runner(workers=workers) as runner:
        for study in studies:
            sbc_studies.run_study(study, replications, map=runner.map)
    return time.perf_counter() - t0


def report_seconds(serial: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CROSSCHECK_CACHE": str(Path(tmp) / "cache")}
        cmd = [sys.executable, "-m", "comparisons.cli", "report", "--out", str(Path(tmp) / "r"),
               "--quiet"] + (["--serial"] if serial else ["--workers", "2"])
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode not in (0, 1, 3):
            raise RuntimeError(done.stderr[-2000:])
        return seconds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replications", type=int, default=40)
    p.add_argument("--studies", nargs="+", default=list(STUDIES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--report", action="store_true", help="also time the whole report")
    args = p.parse_args(argv)
    one, two = [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        one.append(sbc_seconds(1, args.replications, args.studies))
        two.append(sbc_seconds(2, args.replications, args.studies))
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"SBC ({', '.join(args.studies)}; {args.replications} replications each), medians "
          f"of {args.repeats}: 1 worker {m1:.1f} s, 2 workers {m2:.1f} s, speed-up "
          f"{m1 / m2:.2f}x (goal >= 1.6x; {os.getloadavg()[0]:.1f} load average)", flush=True)
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import record_goal

    record_goal("SBC on Dask: 2 workers >= 1.6x faster than 1 (cluster start included)",
                f"{m1 / m2:.2f}x ({m1:.0f} s vs {m2:.0f} s)", m1 / m2 >= 1.6)
    out = {"sbc_1_worker_s": m1, "sbc_2_workers_s": m2, "sbc_speedup": m1 / m2}
    if args.report:
        serial = report_seconds(serial=True)
        parallel = report_seconds(serial=False)
        print(f"crosscheck report, empty result cache: serial {serial:.0f} s, 2 Dask workers "
              f"{parallel:.0f} s, speed-up {serial / parallel:.2f}x", flush=True)
        out.update(report_serial_s=serial, report_parallel_s=parallel)
    return out


if __name__ == "__main__":
    main()
