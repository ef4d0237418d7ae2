"""Command line: ``python -m fastem {demo,fit,predict,bench}``.

``demo``
    Fit a Gaussian mixture to one million generated points and, when
    scikit-learn is installed, time scikit-learn on the same data and
    initialisation.
``fit DATA -k K [--covariance TYPE] -o MODEL.npz``
    Fit a model to a ``.npy`` or ``.csv`` file and save it (no pickle).
``predict MODEL.npz DATA [-o OUT] [--proba]``
    Labels (or probabilities) of the rows of DATA under a saved model.
``bench [...]``
    Side-by-side benchmark against scikit-learn (see ``fastem.bench``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _load_data(path: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"fastem: no such file: {path}")
    if p.suffix == ".npy":
        return np.load(p, mmap_mode="r")
    if p.suffix in (".csv", ".txt"):
        with open(p) as fh:
            first = fh.readline()
        try:
            [float(v) for v in first.strip().split(",")]
            skip = 0
        except ValueError:
            skip = 1  # a header row
        return np.loadtxt(p, delimiter=",", skiprows=skip, ndmin=2)
    raise SystemExit(f"fastem: unsupported data file {path!r} (use .npy or .csv)")


def _write(path: str | None, array: np.ndarray, fmt: str) -> None:
    if path is None:
        np.savetxt(sys.stdout, array, fmt=fmt, delimiter=",")
    elif path.endswith(".npy"):
        np.save(path, array)
    else:
        np.savetxt(path, array, fmt=fmt, delimiter=",")


def _cmd_fit(args: argparse.Namespace) -> int:
    from . import GaussianMixture

    X = _load_data(args.data)
    model = GaussianMixture(
        args.k,
        covariance_type=args.covariance,
        tol=args.tol,
        max_iter=args.max_iter,
        n_init=args.n_init,
        init_params=args.init,
        random_state=args.seed,
        n_threads=args.threads,
        verbose=1 if args.verbose else 0,
    )
    start = time.perf_counter()
    model.fit(X)
    elapsed = time.perf_counter() - start
    model.save(args.output)
    print(
        f"fitted {args.k} '{args.covariance}' components to {X.shape[0]} x {X.shape[1]} "
        f"in {elapsed:.2f} s ({model.n_iter_} iterations, converged={model.converged_}, "
        f"mean log-likelihood {model.lower_bound_:.6f}); saved {args.output}"
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from . import load

    model = load(args.model)
    X = _load_data(args.data)
    if args.proba:
        _write(args.output, model.predict_proba(X), "%.6g")
    else:
        _write(args.output, model.predict(X), "%d")
    return 0


def _demo_data(n: int, d: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    scales = rng.uniform(0.5, 2.0, size=(k, d))
    labels = rng.randint(k, size=n)
    return centers[labels] + rng.standard_normal((n, d)) * scales[labels]


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import GaussianMixture

    n, d, k, cov = args.n, args.d, args.k, args.covariance
    X = _demo_data(n, d, k, args.seed)
    print(f"fastem demo: {n:,} points, {d} features, {k} '{cov}' components")

    # Warm the numba cache on a slice, so compilation is not timed.
    warm = GaussianMixture(k, covariance_type=cov, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm.fit(X[:5000])

    init = GaussianMixture(k, covariance_type=cov, max_iter=0, random_state=args.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init.fit(X)
    t_init = time.perf_counter() - start
    inits = {
        "weights_init": init.weights_,
        "means_init": init.means_,
        "precisions_init": init.precisions_,
    }
    common = {"covariance_type": cov, "max_iter": args.max_iter, "tol": args.tol}

    model = GaussianMixture(k, **common, **inits)
    start = time.perf_counter()
    model.fit(X)
    t_fast = time.perf_counter() - start
    per_iter = t_fast / max(model.n_iter_, 1)
    print(f"\nk-means initialisation: {t_init:.2f} s")
    print(
        f"fastem EM: {t_fast:.2f} s for {model.n_iter_} iterations "
        f"({1e3 * per_iter:.1f} ms/iteration), converged={model.converged_}, "
        f"mean log-likelihood {model.lower_bound_:.6f}"
    )
    order = np.argsort(model.weights_)[::-1]
    print("\n component  weight   mean")
    for c in order:
        mean = ", ".join(f"{v:7.3f}" for v in model.means_[c][:4])
        more = ", ..." if d > 4 else ""
        print(f"   {c:3d}     {model.weights_[c]:.4f}  [{mean}{more}]")

    try:
        from sklearn.mixture import GaussianMixture as SkGaussianMixture
    except ImportError:
        print("\nscikit-learn is not installed: pip install scikit-learn to compare.")
        return 0
    sk = SkGaussianMixture(k, **common, **inits)
    start = time.perf_counter()
    sk.fit(X)
    t_sk = time.perf_counter() - start
    sk_per_iter = t_sk / max(sk.n_iter_, 1)
    diff = np.max(np.abs(sk.means_ - model.means_)) / np.max(np.abs(sk.means_))
    print(
        f"\nscikit-learn EM: {t_sk:.2f} s for {sk.n_iter_} iterations "
        f"({1e3 * sk_per_iter:.1f} ms/iteration), mean log-likelihood "
        f"{sk.lower_bound_:.6f}"
    )
    print(
        f"speed-up per iteration: {sk_per_iter / per_iter:.1f}x; "
        f"max relative difference of the means: {diff:.1e}"
    )
    return 0


def _cmd_bench(argv: list[str]) -> int:
    from .bench import main as bench_main

    return bench_main(argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastem", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="fit one million generated points, compare with scikit-learn"
    )
    demo.add_argument("-n", type=int, default=1_000_000, help="number of points")
    demo.add_argument("-d", type=int, default=2, help="number of features")
    demo.add_argument("-k", type=int, default=8, help="number of components")
    demo.add_argument(
        "--covariance", default="full", choices=["full", "tied", "diag", "spherical"]
    )
    demo.add_argument("--max-iter", type=int, default=100)
    demo.add_argument("--tol", type=float, default=1e-3)
    demo.add_argument("--seed", type=int, default=0)

    fit = sub.add_parser("fit", help="fit a model to a .npy/.csv file and save it")
    fit.add_argument("data")
    fit.add_argument("-k", type=int, required=True, help="number of components")
    fit.add_argument(
        "--covariance", default="full", choices=["full", "tied", "diag", "spherical"]
    )
    fit.add_argument("-o", "--output", default="model.npz")
    fit.add_argument("--max-iter", type=int, default=100)
    fit.add_argument("--tol", type=float, default=1e-3)
    fit.add_argument("--n-init", type=int, default=1)
    fit.add_argument(
        "--init",
        default="kmeans",
        choices=["kmeans", "k-means++", "random", "random_from_data"],
    )
    fit.add_argument("--seed", type=int, default=None)
    fit.add_argument("--threads", type=int, default=None)
    fit.add_argument("-v", "--verbose", action="store_true")

    predict = sub.add_parser(
        "predict", help="labels or probabilities under a saved model"
    )
    predict.add_argument("model")
    predict.add_argument("data")
    predict.add_argument(
        "-o", "--output", default=None, help=".npy or .csv (default: stdout)"
    )
    predict.add_argument("--proba", action="store_true", help="write probabilities")

    sub.add_parser(
        "bench",
        help="side-by-side benchmark (see python -m fastem bench -h)",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastem`` and the ``fastem`` script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return _cmd_bench(argv[1:])
    args = _parser().parse_args(argv)
    commands = {
        "demo": _cmd_demo,
        "fit": _cmd_fit,
        "predict": _cmd_predict,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
