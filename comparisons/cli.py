"""The ``crosscheck`` command line: a thin layer over :mod:`comparisons.api`.

Exit status: 0 when every check agrees, 1 on any disagreement, 2 on bad input or usage,
3 when a verdict is inconclusive.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_AGREE, EXIT_DISAGREE, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
BACKENDS = ("reference", "pymc", "bambi")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {v}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer seed, received {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, received {v}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crosscheck",
        description="Check Bayesian regression backends against each other and exact answers. "
                    "Exit status: 0 agree, 1 disagree, 2 bad input, 3 inconclusive.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the built-in cases")

    def sampling_options(sp):
        sp.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                        help="default: the case file's backends")
        sp.add_argument("--draws", type=_positive_int, default=None)
        sp.add_argument("--tune", type=_positive_int, default=None)
        sp.add_argument("--chains", type=_positive_int, default=None)
        sp.add_argument("--seed", type=_seed, default=None)
        sp.add_argument("--out", type=Path, default=Path("reports"))
        sp.add_argument("--no-cache", action="store_true", help="refit everything")

    run = sub.add_parser("run", help="run one case (a built-in name or a .toml file)")
    run.add_argument("case")
    sampling_options(run)
    run.add_argument("--json", action="store_true", help="print the summary to stdout")
    rep = sub.add_parser("report", help="run every built-in case and write index.html")
    sampling_options(rep)
    cmp_ = sub.add_parser("compare", help="check your own sampler's draws (.csv, .nc, .zarr) "
                                          "against the exact answer and PyMC")
    cmp_.add_argument("draws_file", metavar="DRAWS", type=Path)
    cmp_.add_argument("--case", required=True, help="a built-in case name or a .toml file")
    sampling_options(cmp_)
    cmp_.add_argument("--json", action="store_true", help="print the summary to stdout")
    sbc = sub.add_parser("sbc", help="simulation-based calibration of the reference samplers "
                                     "(runs the SBC study; see make validate)")
    sbc.add_argument("--quick", action="store_true", help="the short version from make test")
    sub.add_parser("bench", help="run the benchmark scripts (same as make bench)")
    return p


class _Progress:
    """Progress of a multi-case run on stderr.

    On a terminal it is a rich progress bar (cases done of total, elapsed time, the current
    stage); elsewhere (CI logs, pipes) timestamped lines, which stay readable in a log file.
    ``progress(message)`` reports a stage, ``progress.advance()`` finishes a case and
    ``progress.close()`` removes the live display. ``bar`` forces one or the other.
    """

    def __init__(self, total: int, *, bar: bool | None = None, console=None):
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self._bar = None
        if bar is None:
            bar = sys.stderr.isatty()
        if bar:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                       TextColumn, TimeElapsedColumn)

            self._bar = Progress(SpinnerColumn(), TextColumn("cases"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"),
                                 console=console or Console(stderr=True), transient=False)
            self._task = self._bar.add_task("starting", total=total)
            self._bar.start()

    def __call__(self, msg: str) -> None:
        if self._bar is not None:
            from rich.markup import escape

            self._bar.update(self._task, description=escape(msg))
            self._bar.refresh()
            return
        elapsed = time.perf_counter() - self.t0
        print(f"[{self.done}/{self.total} cases, {elapsed:5.0f} s] {msg}", file=sys.stderr,
              flush=True)

    def advance(self, msg: str | None = None) -> None:
        """One case finished; ``msg`` (its verdict line) is kept above the bar."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done,
                             description="done" if self.done >= self.total else "")
            if msg:
                self._bar.console.print(msg, markup=False, highlight=False)
        elif msg:
            self(msg)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to output directory {str(out)!r}: "
                         f"{err.strerror or err}.") from None


def _exit_code(verdicts) -> int:
    verdicts = list(verdicts)
    if any(v == "disagree" for v in verdicts):
        return EXIT_DISAGREE
    if any(v == "inconclusive" for v in verdicts):
        return EXIT_INCONCLUSIVE
    return EXIT_AGREE


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from comparisons.cases import CASES, load

    if args.command == "list":
        for name in CASES:
            spec, _ = load(name)
            print(f"{name:24s} {spec.formula}")
        return EXIT_AGREE
    if args.command in ("sbc", "bench"):
        return _hook(args)
    if args.command == "compare":
        return _compare(args)
    from comparisons import api
    from comparisons.harness import ModelMismatch

    names = [args.case] if args.command == "run" else list(CASES)
    try:
        _check_writable(args.out)
        for n in names:  # validate every case file before any work
            load(n)
    except ValueError as err:
        print(f"crosscheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    progress = _Progress(len(names))
    settings = {"backends": args.backends, "draws": args.draws, "tune": args.tune,
                "chains": args.chains, "seed": args.seed, "cache": not args.no_cache}
    summaries = []
    try:
        for n in names:
            # the report's 1% budget is shared by its cases; one case keeps all of it
            summ = api.run(n, out=args.out, progress=progress,
                           alpha=api.case_alpha(len(names)), **settings)
            worst = max((abs(c["z"]) for c in summ["comparisons"]), default=float("nan"))
            progress.advance(f"{summ['case']}: {summ['verdict']} ({len(summ['comparisons'])} "
                             f"checks, max |z| = {worst:.2f}) -> "
                             f"{args.out / summ['case'] / 'report.html'}")
            summaries.append(summ)
        if args.command == "report":
            from comparisons.report import write_index

            bf = api.bayes_factor_rows(cache=not args.no_cache, progress=progress)
            index = write_index(summaries, args.out, bayes_factors=bf)
            progress.close()
            print(f"wrote {index}", file=sys.stderr)
    except ModelMismatch as err:
        progress.close()
        print(f"crosscheck: the backends are not the same model: {err}", file=sys.stderr)
        return EXIT_DISAGREE
    finally:
        progress.close()
    if getattr(args, "json", False):
        print(json.dumps(summaries[0], indent=1))
    return _exit_code(s["verdict"] for s in summaries)


def _hook(args) -> int:
    """``sbc`` and ``bench`` run the studies that live beside the tests and benchmarks."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if args.command == "bench":
        cmd = [sys.executable, str(root / "benchmarks" / "run_all.py")]
    else:
        marker = "not slow" if args.quick else "slow"
        cmd = [sys.executable, "-m", "pytest", str(root / "tests" / "test_sbc.py"), "-m", marker,
               "-q"]
    return subprocess.run(cmd, cwd=root).returncode


def _compare(args) -> int:
    from comparisons import api

    try:
        _check_writable(args.out)
        progress = _Progress(1)
        try:
            summ = api.compare_draws(args.draws_file, args.case, out=args.out,
                                     backends=args.backends or ("pymc",), progress=progress,
                                     cache=not args.no_cache, draws=args.draws, tune=args.tune,
                                     chains=args.chains, seed=args.seed)
        finally:
            progress.close()
    except ValueError as err:
        print(f"crosscheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    worst = [c for c in summ["comparisons"] if "user" in (c["backend"], c.get("other"))]
    bad = sorted(worst, key=lambda c: -abs(c["z"]) if c["z"] == c["z"] else 0)[:3]
    print(f"your draws: {summ['verdict_user']}; largest |z|: " + ", ".join(
        f"{c['parameter']} {c['quantity']} z = {c['z']:+.1f} (vs {c.get('other')})" for c in bad),
        file=sys.stderr)
    if args.json:
        print(json.dumps(summ, indent=1, default=str))
    return _exit_code([summ["verdict_user"]])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
