"""Does GaussianMixtureIC find the true K and covariance type?

Data come from known mixtures (:func:`make_mixture`).  Clear cases
(well-separated clusters, enough rows) must be selected exactly; the
overlapping cases are reported (run with ``-s`` to see the table) and only
the overall rate is checked.  Run this file as a script for the full study
(D from 1 to 10, every covariance type, K up to 10)::

    python tests/test_selection_accuracy.py
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pytest

import fastem

COV_TYPES = ("full", "tied", "diag", "spherical")


def _random_covariance(rng, D, low=0.4, high=2.5):
    """Random rotation, log-uniform eigenvalues in ``[low, high]``."""
    q, _ = np.linalg.qr(rng.randn(D, D))
    ev = np.exp(rng.uniform(np.log(low), np.log(high), D))
    return (q * ev) @ q.T


def make_mixture(
    n_samples, n_components, n_features, covariance_type, separation, seed
):
    """Rows drawn from a random Gaussian mixture of the given type.

    Covariances: ``full`` a random one per component, ``tied`` one shared,
    ``diag`` per-feature variances in [0.25, 3], ``spherical`` one variance
    in [0.3, 3] per component.  Means are drawn until every pair is at least
    ``separation * (s_i + s_j)`` apart, ``s`` the largest standard deviation
    of a component (``separation=4`` is well separated, ``1.5`` overlaps).
    Weights are uniform in [0.5, 1.5], normalised.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    """
    rng = np.random.RandomState(seed)
    K, D = n_components, n_features
    if covariance_type == "full":
        covs = np.stack([_random_covariance(rng, D) for _ in range(K)])
    elif covariance_type == "tied":
        covs = np.broadcast_to(_random_covariance(rng, D), (K, D, D)).copy()
    elif covariance_type == "diag":
        var = np.exp(rng.uniform(np.log(0.25), np.log(3.0), (K, D)))
        covs = var[:, :, None] * np.eye(D)
    else:
        var = np.exp(rng.uniform(np.log(0.3), np.log(3.0), K))
        covs = var[:, None, None] * np.eye(D)
    sd = np.sqrt([np.linalg.eigvalsh(c).max() for c in covs])
    side = separation * 2 * sd.max() * max(K, 2) ** (1.0 / D) * 1.5
    means = np.zeros((K, D))
    k = tries = 0
    while k < K:
        cand = rng.uniform(0, side, D)
        if all(
            np.linalg.norm(cand - means[j]) >= separation * (sd[k] + sd[j])
            for j in range(k)
        ):
            means[k] = cand
            k += 1
        tries += 1
        if tries % 1000 == 0:
            side *= 1.2
    weights = rng.uniform(0.5, 1.5, K)
    counts = rng.multinomial(n_samples, weights / weights.sum())
    X = np.vstack(
        [rng.multivariate_normal(means[k], covs[k], counts[k]) for k in range(K)]
    )
    y = np.repeat(np.arange(K), counts)
    perm = rng.permutation(n_samples)
    return X[perm], y[perm]


def same_model(selected, true, K, D):
    """Covariance types that define the same family of mixtures: with one
    feature full = diag = spherical (and = tied for K = 1); with one
    component full = tied."""
    if selected == true:
        return True
    if D == 1:
        group = {"full", "diag", "spherical"} | ({"tied"} if K == 1 else set())
        return selected in group and true in group
    if K == 1:
        return {selected, true} <= {"full", "tied"}
    return False


def run_case(D, K, cov, separation, seed, n_samples=2000, max_components=6):
    X, _ = make_mixture(n_samples, K, D, cov, separation, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ic = fastem.GaussianMixtureIC(1, max_components, random_state=0).fit(X)
    return ic.n_components_, ic.covariance_type_


CLEAR = [
    (1, 3, "full"),
    (1, 2, "tied"),
    (2, 3, "tied"),
    (2, 4, "diag"),
    (3, 2, "spherical"),
    (4, 1, "diag"),
    (5, 3, "full"),
    (5, 3, "diag"),
    (8, 3, "tied"),
    (10, 2, "spherical"),
]

OVERLAPPING = [
    (1, 3, "spherical"),
    (2, 3, "full"),
    (2, 4, "spherical"),
    (3, 3, "diag"),
    (5, 4, "tied"),
    (5, 3, "spherical"),
    (8, 2, "full"),
    (10, 3, "diag"),
]


@pytest.mark.parametrize(
    ("D", "K", "cov"), CLEAR, ids=[f"D{d}-K{k}-{c}" for d, k, c in CLEAR]
)
def test_clear_cases_exact(D, K, cov):
    k_sel, cov_sel = run_case(D, K, cov, 4.0, seed=D * 1000 + K * 10 + len(cov))
    assert k_sel == K
    assert same_model(cov_sel, cov, K, D), (cov_sel, cov)


def test_overlapping_cases_report():
    lines, hits = [], 0
    for D, K, cov in OVERLAPPING:
        k_sel, cov_sel = run_case(D, K, cov, 1.5, seed=D * 1000 + K * 10 + len(cov))
        ok = k_sel == K and same_model(cov_sel, cov, K, D)
        hits += ok
        lines.append(
            f"D={D:2d} K={K} {cov:9s} -> K={k_sel} {cov_sel:9s} {'ok' if ok else 'MISS'}"
        )
    print("\noverlapping (separation 1.5, N=2000):\n" + "\n".join(lines))
    print(f"{hits}/{len(OVERLAPPING)} selected exactly")
    assert hits >= 0.6 * len(OVERLAPPING)


def study(
    dims=(1, 2, 3, 5, 8, 10),
    sizes=(1, 2, 4, 6),
    separations=(("separated", 4.0), ("overlapping", 1.5)),
    n_samples=3000,
    max_components=10,
):
    """The full accuracy table (prints as it goes; returns the counts)."""
    counts = {}
    for label, sep in separations:
        for D in dims:
            for K in sizes:
                if K == 1 and label != "separated":
                    continue
                for cov in COV_TYPES:
                    t = time.perf_counter()
                    seed = D * 1000 + K * 10 + len(cov)
                    k_sel, cov_sel = run_case(
                        D, K, cov, sep, seed, n_samples, max_components
                    )
                    k_ok = k_sel == K
                    both = k_ok and same_model(cov_sel, cov, K, D)
                    c = counts.setdefault((label, D), [0, 0, 0])
                    c[0] += 1
                    c[1] += k_ok
                    c[2] += both
                    print(
                        f"{label:11s} D={D:2d} K={K} {cov:9s} -> K={k_sel:2d} "
                        f"{cov_sel:9s} {'ok' if both else 'MISS'} "
                        f"({time.perf_counter() - t:.1f}s)",
                        flush=True,
                    )
    print("\n| data | D | cases | K right | K and type right |")
    print("|---|---|---|---|---|")
    for (label, D), (n, k_ok, both) in counts.items():
        print(f"| {label} | {D} | {n} | {k_ok} | {both} |")
    for label, _ in separations:
        tot = [
            sum(v[i] for (lab, _), v in counts.items() if lab == label)
            for i in range(3)
        ]
        print(f"| **{label}** | all | {tot[0]} | {tot[1]} | {tot[2]} |")
    return counts


if __name__ == "__main__":
    study(dims=tuple(int(d) for d in sys.argv[1:]) or (1, 2, 3, 5, 8, 10))
