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


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("bayes-crosscheck")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless the help already says it, or the option is
    a flag); descriptions kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default in (None, False, argparse.SUPPRESS)
                or action.option_strings == []):
            return text
        return f"{text} (default: %(default)s)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crosscheck", formatter_class=_Formatter,
        description="Check Bayesian regression backends (a from-scratch reference, PyMC and "
                    "Bambi) against each other and against exact answers, or check your own "
                    "sampler's draws.",
        epilog="Exit status: 0 agree, 1 disagree, 2 bad input or usage, 3 inconclusive "
               "(some draws mixed too poorly to judge).")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_, description):
        return sub.add_parser(name, help=help_, description=description,
                              formatter_class=_Formatter)

    add("list", "list the built-in cases with a one-line description",
        "List the built-in cases (comparisons/cases/*.toml) and what each one checks.")

    def common(sp):
        sp.add_argument("--quiet", "-q", action="store_true",
                        help="print only errors and the final result (no progress)")
        sp.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="where finished fits are kept (default: $CROSSCHECK_CACHE, else "
                             "$XDG_CACHE_HOME/bayes-crosscheck, else ~/.cache/bayes-crosscheck)")
        sp.add_argument("--no-cache", action="store_true",
                        help="refit everything and store nothing")

    def sampling_options(sp, backends_default="the case file's backends"):
        sp.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                        help=f"backends to fit (default: {backends_default})")
        sp.add_argument("--draws", type=_positive_int, default=None,
                        help="draws per chain (default: the case file's, else 1000)")
        sp.add_argument("--tune", type=_positive_int, default=None,
                        help="warmup draws per chain (default: the case file's, else 1000)")
        sp.add_argument("--chains", type=_positive_int, default=None,
                        help="chains (default: the case file's, else 4)")
        sp.add_argument("--seed", type=_seed, default=None,
                        help="root seed; each backend derives its own (default: the case "
                             "file's, else 20261121)")
        sp.add_argument("--out", type=Path, default=Path("reports"),
                        help="folder for the reports and posteriors (<out>/<case>/)")
        sp.add_argument("--log-likelihood", action="store_true",
                        help="add pointwise log likelihoods to each <backend>.nc (for az.loo)")
        common(sp)

    run = add("run", "run one case (a built-in name or a .toml file)",
              "Fit one case with every backend, compare the posteriors with the exact answer "
              "and each other, and write <out>/<case>/report.html, summary.json, report.md and "
              "<backend>.nc.")
    run.add_argument("case", help="a built-in case name (crosscheck list) or a .toml case file")
    sampling_options(run)
    run.add_argument("--json", action="store_true", help="print the case summary as JSON")
    rep = add("report", "run every built-in case and write index.html",
              "Run every built-in case and write <out>/index.html with a page per case and the "
              "Bayes factors between specifications. The 1%% false-alarm budget is shared by "
              "the cases.")
    sampling_options(rep)
    rep.add_argument("--json", action="store_true",
                     help="print each case's verdict, reason and files as JSON")
    cmp_ = add("compare", "check your own sampler's draws (.csv, .nc, .zarr)",
               "Check draws from your own sampler against the exact answer and PyMC. A CSV has "
               "one column per scalar parameter, named as in the case (Intercept, x, sigma; "
               "vector parameters as 1|g[level]) and optional chain and draw columns. The page "
               "goes to <out>/<case>-user-draws/report.html.")
    cmp_.add_argument("draws_file", metavar="DRAWS", type=Path,
                      help="your draws: a .csv, or an ArviZ .nc or .zarr with a posterior group")
    cmp_.add_argument("--case", required=True, help="a built-in case name or a .toml file")
    sampling_options(cmp_, backends_default="pymc")
    cmp_.add_argument("--json", action="store_true", help="print the summary as JSON")
    sbc = add("sbc", "simulation-based calibration of the reference samplers",
              "Run the simulation-based calibration study (the tests in tests/test_sbc.py; "
              "needs a source checkout).")
    sbc.add_argument("--quick", action="store_true", help="the short version from make test")
    add("bench", "run the benchmark scripts (same as make bench)",
        "Run benchmarks/run_all.py (needs a source checkout); prints figures, asserts nothing.")
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
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

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


def _one_line(text: str, width: int = 90) -> str:
    """The first sentence of a case description, cut to ``width`` characters."""
    first = " ".join(text.split()).split(". ")[0].rstrip(".")
    return first if len(first) <= width else first[:width - 3].rstrip() + "..."


def _cache(args):
    if args.no_cache:
        return False
    return args.cache_dir if args.cache_dir is not None else True


class _Quiet:
    """Progress that prints nothing (``--quiet``)."""

    def __call__(self, msg: str) -> None:
        pass

    def advance(self, msg: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def _verdict_line(summ: dict, page: Path) -> str:
    why = f" ({summ['verdict_reason']})" if summ.get("verdict_reason") else ""
    return f"{summ['case']}: {summ['verdict']}{why} -> {page}"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from comparisons.cases import CASES, load

    if args.command == "list":
        for name in CASES:
            spec, _ = load(name)
            print(f"{name:24s} {_one_line(spec.description) or spec.formula}")
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
    progress = _Quiet() if args.quiet else _Progress(len(names))
    settings = {"backends": args.backends, "draws": args.draws, "tune": args.tune,
                "chains": args.chains, "seed": args.seed, "cache": _cache(args),
                "log_likelihood": args.log_likelihood}
    summaries = []
    index = None
    try:
        for n in names:
            # the report's 1% budget is shared by its cases; one case keeps all of it
            summ = api.run(n, out=args.out, progress=progress,
                           alpha=api.case_alpha(len(names)),
                           index_link=args.command == "report", **settings)
            progress.advance(_verdict_line(summ, args.out / summ["case"] / "report.html"))
            summaries.append(summ)
        if args.command == "report":
            from comparisons.report import write_index

            bf = api.bayes_factor_rows(cache=_cache(args), progress=progress)
            index = write_index(summaries, args.out, bayes_factors=bf)
            progress.close()
            if not args.quiet:
                print(f"wrote {index}", file=sys.stderr)
    except ModelMismatch as err:
        progress.close()
        print(f"crosscheck: the backends are not the same model: {err}", file=sys.stderr)
        return EXIT_DISAGREE
    finally:
        progress.close()
    code = _exit_code(s["verdict"] for s in summaries)
    if args.command == "run":
        summ = summaries[0]
        if args.json:
            print(json.dumps(summ, indent=1, default=str))
        elif args.quiet:
            print(_verdict_line(summ, args.out / summ["case"] / "report.html"))
        else:
            _print_worst(summ["comparisons"] + summ.get("evidence", {}).get("checks", []), summ)
    elif args.json:
        print(json.dumps(_report_json(summaries, args.out, index, code), indent=1, default=str))
    elif args.quiet:
        print(f"{_overall(summaries)}: {index}")
    return code


def _overall(summaries) -> str:
    from comparisons.verdicts import overall

    return overall([{"verdict": s["verdict"]} for s in summaries])


def _report_json(summaries, out: Path, index, code: int) -> dict:
    """What ``report --json`` prints: each case's verdict, reason and files."""
    from comparisons.report import worst_rows

    return {"verdict": _overall(summaries), "exit_status": code, "index": str(index),
            "cases": [{"case": s["case"], "verdict": s["verdict"],
                       "reason": s.get("verdict_reason", ""),
                       "checks": len(s["comparisons"]),
                       "report": str(out / s["case"] / "report.html"),
                       "summary": str(out / s["case"] / "summary.json"),
                       "posteriors": {b: str(out / s["case"] / f) for b, f in
                                      s.get("posteriors", {}).items()},
                       "worst": [{k: c.get(k) for k in ("backend", "other", "parameter",
                                                        "quantity", "estimate", "target",
                                                        "diff_sd", "z", "z_scale", "verdict",
                                                        "reason")}
                                 for c in worst_rows(s["comparisons"], 3)]}
                      for s in summaries]}


def _print_worst(rows: list[dict], summ: dict, n: int = 5, file=None) -> None:
    """The worst few rows (estimate, target, difference in sd, z), the z scale said once, and
    the smallest difference the run can detect."""
    from comparisons.report import Z_TEXT, detectable_text, format_row, worst_rows

    file = file or sys.stderr
    judged = [r for r in rows if "z" in r]
    print(f"worst of {len(judged)} checks ({Z_TEXT}):", file=file)
    for c in worst_rows(judged, n):
        print(f"  {format_row(c)}", file=file)
    for c in rows:
        if "z" not in c and c.get("verdict") != "agree":  # evidence checks
            diff = c.get("difference")
            print(f"  evidence {c['method']} ({c['backend']}): {c['verdict']}"
                  + (f", {c['log_evidence']:.3f} vs exact {c['exact']:.3f} "
                     f"(difference {diff:+.3f} nats, tolerance {c['tolerance']:.3f})"
                     if diff is not None else "")
                  + (f": {c['reason']}" if c.get("reason") else ""), file=file)
    det = detectable_text(summ.get("detectable", {}),
                          "user" if "verdict_user" in summ else None)
    if det:
        print(f"{det[0].upper()}{det[1:]}.", file=file)


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
        progress = _Quiet() if args.quiet else _Progress(1)
        try:
            summ = api.compare_draws(args.draws_file, args.case, out=args.out,
                                     backends=args.backends or ("pymc",), progress=progress,
                                     cache=_cache(args), draws=args.draws, tune=args.tune,
                                     chains=args.chains, seed=args.seed,
                                     log_likelihood=args.log_likelihood)
        finally:
            progress.close()
    except ValueError as err:
        print(f"crosscheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    mine = [c for c in summ["comparisons"] if "user" in (c["backend"], c.get("other"))]
    mine += [c for c in summ["evidence"]["checks"] if c["backend"] == "user"]
    why = f" ({summ['verdict_user_reason']})" if summ.get("verdict_user_reason") else ""
    print(f"your draws: {summ['verdict_user']}{why}", file=sys.stderr)
    if not args.quiet:
        _print_worst(mine, summ)
    print(f"wrote {summ['report']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summ, indent=1, default=str))
    return _exit_code([summ["verdict_user"]])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
