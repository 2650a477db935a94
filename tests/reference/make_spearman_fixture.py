#!/usr/bin/env python3
"""Builds tests/reference/fixtures/spearman_cases.json for tests/unit/spearman_test.cc.

Expected values come from scipy (the reference code bojone/BERT-whitening scores STS with
scipy.stats.spearmanr(labels, sims)): rankdata(method="average"), spearmanr, pearsonr.
Deterministic; regenerate with

    VENV/bin/python tests/reference/make_spearman_fixture.py [--out FILE]

Each case: {"name", "x": [...], "y": [...], "rank_x": [...], "rank_y": [...],
"spearman": r or null, "pearson": r or null}; null = scipy returns NaN (constant input).
Values are written with repr(), i.e. shortest round-trip doubles.
"""
import argparse
import json
import math
import os
import warnings

import numpy as np
import scipy
import scipy.stats


def num(v):
    v = float(v)
    return None if math.isnan(v) else v


def case(name, x, y):
    x = [float(v) for v in x]
    y = [float(v) for v in y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant-input warnings: NaN is the expected result
        rho = scipy.stats.spearmanr(x, y).statistic
        r = scipy.stats.pearsonr(x, y).statistic
    return {
        "name": name,
        "x": x,
        "y": y,
        "rank_x": [float(v) for v in scipy.stats.rankdata(x, method="average")],
        "rank_y": [float(v) for v in scipy.stats.rankdata(y, method="average")],
        "spearman": num(rho),
        "pearson": num(r),
    }


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "fixtures", "spearman_cases.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(20210315)
    cases = []
    # Hand-made: ties in both inputs, including a three-way tie and a tie at the extremes.
    cases.append(case("ties_small", [1, 2, 2, 3, 3, 3, 5, 0, 0],
                      [0.1, 0.4, 0.4, 0.2, 0.9, 0.9, 0.8, 0.0, 0.3]))
    cases.append(case("no_ties", [3, 1, 4, 1.5, 5, 9, 2.6, 6.5], [2, 7, 1, 8, 2.8, 1.8, 2.9, 0.5]))
    cases.append(case("perfect_negative", [1, 2, 3, 4, 5], [10, 8, 6, 4, 2]))
    # STS-B-like: integer labels 0-5 against noisy similarities rounded to create ties.
    labels = rng.integers(0, 6, size=300)
    sims = np.round(0.1 * labels + rng.normal(0, 0.3, size=300), 2)
    cases.append(case("stsb_like_300", labels, sims))
    # LCQMC-like: binary labels (massive ties) against continuous cosines.
    lab = rng.integers(0, 2, size=257)
    cos = np.tanh(0.5 * lab + rng.normal(0, 0.7, size=257))
    cases.append(case("binary_257", lab, cos))
    # Both sides heavily tied.
    cases.append(case("both_tied_120", rng.integers(0, 4, size=120), rng.integers(0, 3, size=120)))
    # Constant input: scipy returns NaN.
    cases.append(case("constant_x", [2, 2, 2, 2], [1, 2, 3, 4]))
    doc = {
        "generator": "tests/reference/make_spearman_fixture.py",
        "scipy_version": scipy.__version__,
        "numpy_version": np.__version__,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out}: {len(cases)} cases (scipy {scipy.__version__})")


if __name__ == "__main__":
    main()
