"""Run every benchmark script in this folder (``make bench``) and end with one table of goals.

Each script prints its own figures (medians of 3 fits, ratios measured side by side in one run,
like for like with PyMC's defaults: 4 chains, 1000 warmup + 1000 draws) and records its goals;
this script gathers them and prints, last, one table: goal, measured, whether it holds, and the
total wall time of the run (goal: within 10 minutes). The machines are shared and noisy: compare
ratios, not seconds.

Options are passed on to the scripts that take them: ``--dense-slopes`` (the dense quadrature
path on radon-slopes, minutes per run) to ``bench_quadrature.py``, ``--nutpie-large`` (nutpie
fitted at n = 10^6 itself, about ten minutes) to ``bench_gibbs.py``. Both are off by default;
with either, the run no longer fits in ten minutes.

Usage::

    python benchmarks/run_all.py [--dense-slopes] [--nutpie-large]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = {"bench_gibbs.py": ["--nutpie-large"], "bench_hierarchical.py": [],
           "bench_bridge.py": [], "bench_quadrature.py": ["--dense-slopes"],
           "bench_parallel.py": []}
BUDGET = 600.0  # seconds


def print_table(rows: list[dict]) -> None:
    width = {"goal": 62, "measured": 32}
    print("\n" + "=" * 110)
    print(f"{'goal':<{width['goal']}}  {'measured (median of 3)':<{width['measured']}}  holds")
    print("-" * 110)
    for row in rows:
        verdict = {True: "yes", False: "NO", None: "n/a"}[row["holds"]]
        goal = textwrap.wrap(row["goal"], width["goal"])
        print(f"{goal[0]:<{width['goal']}}  {row['measured']:<{width['measured']}}  {verdict}")
        for line in goal[1:]:
            print(line)
        if row.get("note"):
            for line in textwrap.wrap(row["note"], 104):
                print(f"    {line}")
    print("=" * 110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-slopes", action="store_true")
    parser.add_argument("--nutpie-large", action="store_true")
    args = parser.parse_args(argv)
    passed = {"--dense-slopes": args.dense_slopes, "--nutpie-large": args.nutpie_large}
    start = time.perf_counter()
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        goals = Path(tmp) / "goals.jsonl"
        env = dict(os.environ, BENCH_GOALS=str(goals))
        for script, options in SCRIPTS.items():
            print(f"\n=== {script} ===", flush=True)
            cmd = [sys.executable, str(HERE / script)] + [o for o in options if passed[o]]
            if subprocess.run(cmd, cwd=HERE.parent, env=env).returncode:
                failed.append(script)
        rows = [json.loads(line) for line in goals.read_text().splitlines()] \
            if goals.exists() else []
    wall = time.perf_counter() - start
    rows.append({"goal": "make bench finishes within 10 minutes", "measured":
                 f"{wall / 60:.1f} min ({wall:.0f} s)", "holds": wall <= BUDGET,
                 "note": "dense radon-slopes quadrature and nutpie at n=10^6 are behind flags"
                         if not (args.dense_slopes or args.nutpie_large) else
                         "with optional flags on"})
    if failed:
        rows.append({"goal": "every benchmark script ran", "measured":
                     f"failed: {', '.join(failed)}", "holds": False})
    print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
