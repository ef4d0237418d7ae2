"""Time fastem.GaussianMixtureIC against a plain scikit-learn loop.

Both fit the same grid (n_components x covariance types, n_init=1, kmeans
initialisation, the same tol and max_iter) on the same data and score every
model with BIC.  scikit-learn can be timed on a subset of the grid
(``--sk-ks``); its time is then extrapolated from the per-model times of the
subset by a least-squares fit ``t(K) = a + b K`` per covariance type (said in
the output).

    python benchmarks/bench_selection.py --n 100000 --d 2
    python benchmarks/bench_selection.py --n 1000000 --d 8 --sk-ks 1,4,7,10
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def blobs(n, d, k, seed=0):
    """``k`` Gaussian clusters with random full covariances."""
    rng = np.random.RandomState(seed)
    means = rng.uniform(-10, 10, size=(k, d))
    counts = rng.multinomial(n, np.full(k, 1.0 / k))
    parts = []
    for c in range(k):
        a = rng.randn(d, d) * 0.5 + np.eye(d)
        parts.append(means[c] + rng.randn(counts[c], d) @ a.T)
    X = np.vstack(parts)
    return X[rng.permutation(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=2)
    ap.add_argument("--true-k", type=int, default=5)
    ap.add_argument("--kmax", type=int, default=10)
    ap.add_argument("--sk-ks", default="all", help="K values timed for sklearn")
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()

    import fastem

    X = blobs(args.n, args.d, args.true_k)
    types = ("full", "tied", "diag", "spherical")
    # Warm the kernels' disk cache (compile once, outside the timing).
    fastem.GaussianMixtureIC(1, 2, random_state=0).fit(X[:5000])

    t0 = time.perf_counter()
    ic = fastem.GaussianMixtureIC(1, args.kmax, random_state=0).fit(X)
    t_fe = time.perf_counter() - t0
    tab = ic.criterion_table_
    print(
        f"fastem sweep: N={args.n} D={args.d} K=1..{args.kmax} x 4 types: "
        f"{t_fe:.2f}s, {int(np.sum(tab['n_iter']))} EM iterations, "
        f"best {ic.best_params_}"
    )
    if args.skip_sklearn:
        return
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    ks = (
        list(range(1, args.kmax + 1))
        if args.sk_ks == "all"
        else [int(k) for k in args.sk_ks.split(",")]
    )
    times = {t: {} for t in types}
    iters = 0
    best = (np.inf, None)
    for k in ks:
        for cov in types:
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm = GaussianMixture(k, covariance_type=cov, random_state=0).fit(X)
            bic = gm.bic(X)
            times[cov][k] = time.perf_counter() - t
            iters += gm.n_iter_
            best = min(best, (bic, (k, cov)))
            print(f"  sklearn K={k} {cov}: {times[cov][k]:.2f}s ({gm.n_iter_} it)")
    measured = sum(sum(v.values()) for v in times.values())
    if len(ks) == args.kmax:
        total, how = measured, "measured"
    else:
        total = 0.0
        for cov in types:
            kk = np.array(list(times[cov]))
            tt = np.array(list(times[cov].values()))
            a, b = np.polyfit(kk, tt, 1)[::-1]
            total += sum(max(a + b * k, 0.0) for k in range(1, args.kmax + 1))
        how = f"extrapolated from K in {ks} (linear in K per type)"
    print(
        f"sklearn loop: {total:.1f}s ({how}; {measured:.1f}s measured, "
        f"{iters} EM iterations), best {best[1]}"
    )
    print(f"speed-up: {total / t_fe:.1f}x")


if __name__ == "__main__":
    main()
