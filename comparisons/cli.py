"""The ``crosscheck`` command line: a thin layer over :mod:`comparisons.harness`.

Exit status: 0 when every check agrees, 1 on any disagreement, 2 on bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_AGREE, EXIT_DISAGREE, EXIT_USAGE = 0, 1, 2


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
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, received {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, received {v}")
    return v


def parser() -> argparse.ArgumentParser:
    from comparisons.harness import BACKENDS

    p = argparse.ArgumentParser(prog="crosscheck",
                                description="Check Bayesian regression backends against each other "
                                            "and against exact answers.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the built-in cases")

    def sampling_options(sp):
        sp.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
        sp.add_argument("--draws", type=_positive_int, default=1000)
        sp.add_argument("--tune", type=_positive_int, default=1000)
        sp.add_argument("--chains", type=_positive_int, default=4)
        sp.add_argument("--seed", type=_seed, default=20261121)
        sp.add_argument("--out", type=Path, default=Path("reports"))

    run = sub.add_parser("run", help="run one case and write its report")
    run.add_argument("case")
    sampling_options(run)
    run.add_argument("--json", action="store_true", help="print the summary to stdout")
    rep = sub.add_parser("report", help="run every built-in case and write index.html")
    sampling_options(rep)
    return p


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to output directory {str(out)!r}: {err.strerror}.") from None


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from comparisons.cases import CASES, get_case

    if args.command == "list":
        for name, build in CASES.items():
            spec = build()
            print(f"{name:16s} {spec.formula:12s} {spec.description.split('.')[0]}")
        return EXIT_AGREE
    from comparisons.harness import run_case
    from comparisons.report import write_case, write_index

    try:
        _check_writable(args.out)
        names = [args.case] if args.command == "run" else list(CASES)
        specs = [get_case(n) for n in names]
    except ValueError as err:
        print(f"crosscheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    summaries = []
    for spec in specs:
        result = run_case(spec, backends=args.backends, draws=args.draws, tune=args.tune,
                          chains=args.chains, seed=args.seed, progress=_progress)
        summaries.append(write_case(result, args.out))
        worst = max(abs(c["z"]) for c in result.checks)
        _progress(f"{spec.name}: {result.verdict} ({len(result.checks)} checks, max |z| = "
                  f"{worst:.2f}) -> {args.out / spec.name / 'report.html'}")
    if args.command == "report":
        path = write_index(summaries, args.out)
        _progress(f"wrote {path}")
    if getattr(args, "json", False):
        print(json.dumps(summaries[0], indent=1))
    return EXIT_AGREE if all(s["verdict"] == "agree" for s in summaries) else EXIT_DISAGREE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
