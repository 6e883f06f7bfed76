"""The ``crosscheck`` command line: a thin layer over :mod:`comparisons.api`.

Exit status: 0 when every check agrees, 1 on any disagreement, 2 on bad input or usage,
3 when a verdict is inconclusive, 4 when the program crashed (a traceback, never a verdict).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_AGREE, EXIT_DISAGREE, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_CRASH = 0, 1, 2, 3, 4
BACKENDS = ("reference", "pymc", "bambi")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}") from None
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
               "(some draws mixed too poorly to judge), 4 crash.")
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

    def dask_options(sp, units):
        sp.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help=f"run the {units} on the Dask cluster at ADDRESS (e.g. "
                             "tcp://10.0.0.5:8786; default: a local cluster)")
        sp.add_argument("--workers", type=_positive_int, default=None,
                        help="worker processes of the local cluster (default: one per core)")
        sp.add_argument("--serial", action="store_true",
                        help=f"run the {units} one after another in this process, without Dask")

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
    rep.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                     help="run these cases only (default: every built-in case)")
    sampling_options(rep)
    dask_options(rep, "cases")
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
    sbc = add("sbc", "simulation-based calibration of the reference, PyMC and Bambi samplers",
              "Simulation-based calibration (Talts et al. 2018): draw parameters from the "
              "prior and data from the model, fit, and test the ranks of the true values among "
              "the draws for uniformity (simultaneous ECDF bands, Saeilynoja et al. 2022). "
              "Replications run as Dask tasks. Writes <out>/sbc/index.html and sbc.json.")
    sbc.add_argument("--quick", action="store_true",
                     help="few replications (the version make test runs)")
    sbc.add_argument("--studies", nargs="+", default=None, metavar="NAME",
                     help="which studies (default: all; see the list in the page)")
    sbc.add_argument("--replications", type=_positive_int, default=None,
                     help="replications per study (default: 200, or 20 with --quick)")
    sbc.add_argument("--seed", type=_seed, default=20261121, help="root seed")
    sbc.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    sbc.add_argument("--quiet", "-q", action="store_true", help="no progress")
    dask_options(sbc, "replications")
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
    """Run the command line; a crash is exit status 4 with its traceback, never a verdict."""
    args = parser().parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("crosscheck: interrupted; files already written are complete (each is written "
              "whole or not at all)", file=sys.stderr)
        return 130
    except Exception:  # a bug or a broken environment: say so, do not read as a finding
        import traceback

        traceback.print_exc()
        print("crosscheck: crashed (exit status 4): the traceback above is a bug or a broken "
              "installation, not a verdict", file=sys.stderr)
        return EXIT_CRASH


def _main(args) -> int:
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

    names = [args.case] if args.command == "run" else list(args.cases or CASES)
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
    index = None

    def done(summ):
        progress.advance(_verdict_line(summ, args.out / summ["case"] / "report.html"))

    try:
        if args.command == "run":
            summaries = [api.run(args.case, out=args.out, progress=progress,
                                 alpha=api.case_alpha(1), **settings)]
            done(summaries[0])
        else:
            # the report's 1% budget is shared by its cases (api.case_alpha)
            summaries = api.report(args.out, cases=names, progress=progress, on_case=done,
                                   scheduler=args.scheduler, workers=args.workers,
                                   serial=args.serial, **settings)
            index = args.out / "index.html"
            progress.close()
            if not args.quiet:
                print(f"wrote {index}", file=sys.stderr)
    except ModelMismatch as err:
        progress.close()
        print(f"crosscheck: the backends are not the same model: {err}", file=sys.stderr)
        return EXIT_DISAGREE
    except ValueError as err:  # e.g. an unreachable scheduler
        progress.close()
        print(f"crosscheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
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
    """``sbc`` runs the simulation-based calibration studies; ``bench`` the benchmark scripts
    of a source checkout."""
    if args.command == "sbc":
        return _sbc(args)
    import subprocess

    root = Path(__file__).resolve().parents[1]
    script = root / "benchmarks" / "run_all.py"
    if not script.exists():
        print(f"crosscheck: error: {script} not found; the benchmarks live in a source "
              "checkout (git clone, then make bench).", file=sys.stderr)
        return EXIT_USAGE
    return subprocess.run([sys.executable, str(script)], cwd=root).returncode


def _sbc(args) -> int:
    from comparisons import sbc_studies
    from comparisons.parallel import Runner

    studies = args.studies or list(sbc_studies.STUDIES)
    unknown = [s for s in studies if s not in sbc_studies.STUDIES]
    if unknown:
        print(f"crosscheck: error: unknown SBC study {unknown}; valid: "
              f"{', '.join(sbc_studies.STUDIES)}.", file=sys.stderr)
        return EXIT_USAGE
    reps = args.replications or (20 if args.quick else 200)
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr,
                                                                   flush=True))
    results = {}
    t0 = time.perf_counter()
    try:
        with Runner(args.scheduler, args.workers, serial=args.serial) as runner:
            say(f"SBC: {len(studies)} studies x {reps} replications {runner.description}")
            for name in studies:
                results[name] = sbc_studies.run_study(
                    name, reps, seed=args.seed, map=None if args.serial else runner.map)
                r = results[name]
                say(f"[{time.perf_counter() - t0:5.0f} s] {name}: "
                    f"{'uniform' if r.passed else 'NOT uniform'} (smallest p "
                    f"{min(r.p_values.values()):.3g})")
    except ValueError as err:
        print(f"crosscheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    page = sbc_studies.write(results, args.out)
    print(f"wrote {page}", file=sys.stderr)
    return EXIT_AGREE if all(r.passed for r in results.values()) else EXIT_DISAGREE


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
