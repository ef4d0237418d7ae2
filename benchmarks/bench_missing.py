"""Cost of EM with missing values against the complete-data path, and the
imputation error against column means and scikit-learn's IterativeImputer.

Iteration cost: the same data with and without a fraction of the values
removed at random, the same parameters entering each iteration, E- and
M-step timed alternately (so that load from other processes hits both
alike); then whole ``fit`` calls (split by pattern included) from the same
user-given initial parameters.

    python benchmarks/bench_missing.py --n 1000000 --d 16 --k 16 --missing 0.1
    python benchmarks/bench_missing.py --impute  # RMSE comparison only
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def mixture(n, d, k, seed=0):
    """``k`` clusters with random full covariances."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4, size=(k, d))
    labels = rng.integers(k, size=n)
    factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
    noise = rng.normal(size=(n, d))
    return centers[labels] + np.einsum("nd,nde->ne", noise, factors[labels])


def remove(X, fraction, seed=1):
    rng = np.random.default_rng(seed)
    mask = rng.random(X.shape) < fraction
    mask[mask.all(axis=1), 0] = False
    return np.where(mask, np.nan, X), mask


def iteration_cost(args):
    import fastem
    from fastem.families import gaussian_missing as gm
    from fastem.families.gaussian_fit import GaussianEM
    from fastem.sources import ArraySource

    X = mixture(args.n, args.d, args.k)
    Xm, mask = remove(X, args.missing)
    print(
        f"N={args.n} D={args.d} K={args.k} {args.cov}: {mask.mean():.1%} of values "
        f"missing, {np.mean(~mask.any(axis=1)):.1%} of rows complete"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = fastem.GaussianMixture(
            args.k, covariance_type=args.cov, max_iter=0, random_state=0
        ).fit(X[:20000])
    params0 = init._params
    complete = (GaussianEM(args.cov, 1e-6), ArraySource(X, np.empty(0)))
    t = time.perf_counter()
    source = gm.MissingArraySource.from_array(Xm, np.empty(0))
    t_split = time.perf_counter() - t
    print(f"split into {source.incomplete.n_patterns} patterns: {t_split:.3f} s")
    missing = (gm.GaussianMissingEM(args.cov, 1e-6), source)
    for family, src in (complete, missing):  # compile / load the cache
        family.m_step(family.e_step(src, params0))
    times = {"complete": [], "missing": []}
    params = {"complete": params0, "missing": params0}
    for _ in range(args.iters):
        for name, (family, src) in (("complete", complete), ("missing", missing)):
            t = time.perf_counter()
            params[name], _ = family.m_step(family.e_step(src, params[name]))
            times[name].append(time.perf_counter() - t)
    tc, tm = np.median(times["complete"]), np.median(times["missing"])
    for name, ts in times.items():
        print(f"{name:>8} E+M step, s: {np.round(ts, 3)} (median {np.median(ts):.3f})")
    print(f"ratio missing / complete per iteration (median): {tm / tc:.2f}")

    kw = {
        "covariance_type": args.cov,
        "weights_init": init.weights_,
        "means_init": init.means_,
        "precisions_init": init.precisions_,
        "max_iter": args.iters,
        "tol": 0.0,
    }
    fits = {"complete": [], "missing": []}
    for _ in range(2):
        for name, data in (("complete", X), ("missing", Xm)):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fastem.GaussianMixture(args.k, **kw).fit(data)
            fits[name].append(time.perf_counter() - t)
    fc, fm = min(fits["complete"]), min(fits["missing"])
    print(
        f"fit ({args.iters} iterations, split included): complete {fc:.2f} s, "
        f"missing {fm:.2f} s, ratio {fm / fc:.2f}"
    )


def imputation(args):
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    import fastem

    rng = np.random.RandomState(0)
    d, k = 5, 3
    means = rng.uniform(-5, 5, (k, d))
    factors = rng.normal(size=(k, d, d)) * 0.6 + np.eye(d)
    labels = rng.choice(k, 3000)
    X = means[labels] + np.einsum("nij,nj->ni", factors[labels], rng.randn(3000, d))
    Xm, mask = remove(X, 0.2)
    rows = []
    t = time.perf_counter()
    model = fastem.GaussianMixture(k, n_init=3, random_state=0, max_iter=500, tol=1e-6)
    imputed = model.fit(Xm).impute(Xm)
    rows.append(("fastem GaussianMixture(3).impute", imputed, time.perf_counter() - t))
    t = time.perf_counter()
    filled = np.where(mask, np.nanmean(Xm, axis=0), Xm)
    rows.append(("column mean", filled, time.perf_counter() - t))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = IterativeImputer(random_state=0, max_iter=20).fit_transform(Xm)
    rows.append(("sklearn IterativeImputer", it, time.perf_counter() - t))
    print(f"N=3000 D={d}, 3-component mixture, {mask.mean():.0%} of values removed")
    for name, out, secs in rows:
        rmse = np.sqrt(np.mean((out[mask] - X[mask]) ** 2))
        print(f"  {name:<34} RMSE {rmse:.3f}   ({secs:.2f} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--cov", default="full")
    parser.add_argument("--missing", type=float, default=0.1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--impute", action="store_true", help="RMSE comparison only")
    args = parser.parse_args()
    if args.impute:
        imputation(args)
    else:
        iteration_cost(args)


if __name__ == "__main__":
    main()
