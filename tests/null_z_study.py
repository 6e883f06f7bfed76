"""Null study of the verdict rule: how the z of every check is distributed under correct samplers.

``python tests/null_z_study.py RUNS [--offset K] [SCENARIO ...]`` runs each correct scenario of
:mod:`calibration` RUNS times (seeds ``SEED0 + K + i``; pass an offset to use seeds that no
earlier study saw) and prints, per scenario, the verdict counts, the runs that did not
agree (with their worst checks), and per quantity the root-mean-square z and the fractions
beyond 2 and 3 (a standard normal gives 4.55% and 0.27%). It shows where false alarms come from
when the rate exceeds the budget: tails of z heavier than the normal's mean MCSEs that are
too small.
"""
import json
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, "tests")
import calibration as C  # noqa: E402

from comparisons.harness import compare  # noqa: E402
from comparisons.verdicts import overall  # noqa: E402
from models.reference_model import exact_answer  # noqa: E402


def main(runs: int, names: list[str], offset: int = 0) -> None:
    for name in names or list(C.CORRECT):
        spec, fit = C.CORRECT[name]()
        exact = exact_answer(spec)
        zs, verd, bad, t = {}, {"agree": 0, "disagree": 0, "inconclusive": 0}, [], time.time()
        for k in range(runs):
            with np.errstate(all="ignore"):
                dt = fit(C.SEED0 + offset + k)
            checks = compare(spec, {"under-test": dt}, exact)
            v = overall(checks)
            verd[v] += 1
            if v != "agree":
                bad.append((k, [(c.get("parameter"), c.get("quantity"), round(c.get("z") or 0, 2))
                                for c in checks if c.get("verdict") != "agree"][:5]))
            for c in checks:
                if c.get("z") is not None and np.isfinite(c["z"]):
                    zs.setdefault(c["quantity"], []).append(c["z"])
        out = {"verdicts": verd, "seconds": round(time.time() - t), "not_agree": bad}
        for q, z in zs.items():
            z = np.abs(np.array(z))
            out[q] = {"n": len(z), "rms": round(float(np.sqrt(np.mean(z**2))), 3),
                      ">2": round(float(np.mean(z > 2)), 4), ">3": round(float(np.mean(z > 3)), 5)}
        print(name, json.dumps(out), flush=True)


if __name__ == "__main__":
    args = sys.argv[2:]
    offset = 0
    if args[:1] == ["--offset"]:
        offset, args = int(args[1]), args[2:]
    main(int(sys.argv[1]), args, offset)
