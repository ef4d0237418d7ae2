"""Choosing the number of components and the covariance type.

:class:`GaussianMixtureIC` fits every ``n_components`` in a range for every
covariance type and keeps the model with the lowest information criterion.

Criteria (scikit-learn's sign convention: **lower is better**), with
``log L = sum_i w_i log p(x_i)`` under the fitted parameters, ``p`` the
number of free parameters (scikit-learn's ``_n_parameters``) and
``n = sum_i w_i`` (the number of rows without weights):

* ``bic = -2 log L + p log n`` (scikit-learn's ``GaussianMixture.bic``),
* ``aic = -2 log L + 2 p`` (scikit-learn's ``GaussianMixture.aic``),
* ``icl = bic + 2 H`` with ``H = -sum_i w_i sum_k r_ik log r_ik`` the entropy
  of the responsibilities (the soft-assignment ICL of Biernacki, Celeux and
  Govaert 2000, as in McLachlan and Peel's ICL-BIC).  ``H`` comes out of the
  fused E-step statistics (``log_likelihood - expected_log_joint``), so it
  costs no ``(n_samples, n_components)`` array.

Work shared across the sweep: the data are validated and converted once;
for each ``n_components`` the ``n_init`` initialisations (k-means by
default) are computed once as full per-cluster scatter statistics and
converted to each covariance type, so the four covariance types start from
the same partition; the kernels are compiled once per covariance type and
dtype (and cached on disk).  The criterion of each model comes from one
final fused E-step pass with its fitted parameters.

Refinement (``refine=True``): independent initialisations at each size can
miss an optimum that the next larger fit found (k-means merges two true
clusters and splits another; all four covariance types then inherit that
start).  After the sweep, the sizes just below each covariance type's best
are re-fitted from the next larger model with its two closest components
merged, and the re-fit is kept when its log-likelihood is higher.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import em
from ._base import EstimatorBase, stderr_reporter
from ._estimator import check_run_options, single_threaded_blas
from ._validation import (
    check_data,
    check_int,
    check_option,
    check_random_state,
    check_real,
    check_sample_weight,
)
from .exceptions import ConvergenceWarning, DegenerateComponentWarning, NotFittedError
from .families import gaussian as g
from .families.gaussian_fit import INIT_METHODS, GaussianEM, _initial_stats
from .mixture import GaussianMixture
from .sources import ArraySource

CRITERIA = ("bic", "aic", "icl")

#: Columns of :attr:`GaussianMixtureIC.criterion_table_`, in order.
TABLE_COLUMNS = (
    "n_components",
    "covariance_type",
    "n_parameters",
    "log_likelihood",
    "entropy",
    "bic",
    "aic",
    "icl",
    "converged",
    "n_iter",
    "refined",
    "fit_time",
)


def information_criteria(stats: g.GaussianStats, n_parameters: int) -> dict[str, float]:
    """BIC, AIC and ICL (lower is better) from the statistics of an E-step
    made with the fitted parameters.

    Parameters
    ----------
    stats : GaussianStats
        Statistics of all the data under the parameters being scored.
    n_parameters : int
        Free parameters of the model.

    Returns
    -------
    criteria : dict
        ``log_likelihood`` (weighted total), ``entropy`` (weighted entropy
        of the responsibilities), ``bic``, ``aic`` and ``icl``.
    """
    loglik = float(stats.log_likelihood)
    entropy = max(float(stats.log_likelihood - stats.expected_log_joint), 0.0)
    bic = -2.0 * loglik + n_parameters * np.log(stats.total_weight)
    return {
        "log_likelihood": loglik,
        "entropy": entropy,
        "bic": float(bic),
        "aic": float(-2.0 * loglik + 2.0 * n_parameters),
        "icl": float(bic + 2.0 * entropy),
    }


class GaussianMixtureIC(EstimatorBase):
    """Gaussian mixture whose size and covariance type are chosen by BIC,
    AIC or ICL over a grid.

    Every ``n_components`` in ``[min_components, max_components]`` is fitted
    with every covariance type in ``covariance_type`` (``n_init`` restarts
    each, as :class:`fastem.GaussianMixture`), each fitted model is scored,
    and the one with the lowest criterion is kept as ``best_estimator_``
    (ties go to the first in fitting order: fewer components, then the
    order of ``covariance_type``).

    Parameters
    ----------
    min_components : int, default=1
        Smallest number of components tried.
    max_components : int, default=10
        Largest number of components tried (at most ``n_samples``).
    covariance_type : {'all', 'full', 'tied', 'diag', 'spherical'} or sequence of those, default='all'
        Covariance types tried; ``'all'`` is
        ``('full', 'tied', 'diag', 'spherical')``.
    criterion : {'bic', 'aic', 'icl'}, default='bic'
        The criterion minimised (all three are computed and tabulated).
    n_init : int, default=1
        Initialisations per ``n_components``, shared by the covariance types.
    refine : bool, default=True
        After the sweep, re-fit the one or two sizes just below each
        covariance type's best size from the next larger fitted model with
        its two closest components merged, and keep a re-fit when its
        log-likelihood is higher (the merge move of split-and-merge EM).
        Guards the
        selection against a poor local optimum at the true size, at the
        cost of a few extra fits.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How initial responsibilities are chosen (see
        :class:`fastem.GaussianMixture`).
    tol, reg_covar, max_iter :
        As in :class:`fastem.GaussianMixture`, for every model.
    random_state : int, RandomState or None, default=None
        Seed for the initialisations (and the best model's :meth:`sample`).
    verbose : int, default=0
        1 writes one line per fitted model (its size, covariance type and
        criterion) to standard error; 2 adds the EM progress lines.
    verbose_interval : int, default=10
        EM iterations between progress lines at ``verbose >= 2``.
    n_threads : int or None, default=None
        Threads for the kernels (None keeps numba's setting, -1 uses all).
    callback : callable or None, default=None
        ``callback(record)`` after each model, with ``record`` the dict of
        that model's row of :attr:`criterion_table_`; returning ``True``
        stops the sweep (the best of the models fitted so far is kept).

    Attributes
    ----------
    best_estimator_ : fastem.GaussianMixture
        The selected, fitted model.
    best_params_ : dict
        ``{'n_components': ..., 'covariance_type': ...}`` of the best model.
    n_components_ : int
    covariance_type_ : str
    best_criterion_ : float
        The selected model's value of ``criterion`` (lower is better).
    criterion_table_ : pandas.DataFrame or dict of ndarray
        One row per fitted model, in fitting order, with the columns of
        :data:`TABLE_COLUMNS`: ``log_likelihood`` is the weighted total
        ``log L``, ``entropy`` the weighted entropy of the responsibilities,
        ``refined`` whether the row comes from a merge re-fit, ``fit_time``
        in seconds (including a rejected re-fit).  A DataFrame when pandas can be imported,
        otherwise a dict of 1-d arrays (``pandas.DataFrame(table)`` turns
        it into one).  Models whose fit failed (for instance an
        unrecoverable singular covariance) have infinite criteria.
    n_features_in_ : int

    Notes
    -----
    The criteria use the parameters after the last EM iteration (one extra
    E-step pass per model), so ``bic`` equals
    ``best_estimator_.bic(X, sample_weight)`` and scikit-learn's
    ``GaussianMixture.bic`` for the same parameters.
    """

    def __init__(
        self,
        min_components: int = 1,
        max_components: int = 10,
        *,
        covariance_type: str | Sequence[str] = "all",
        criterion: str = "bic",
        n_init: int = 1,
        refine: bool = True,
        init_params: str = "kmeans",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        random_state=None,
        verbose: int = 0,
        verbose_interval: int = 10,
        n_threads: int | None = None,
        callback: Callable[[dict[str, Any]], Any] | None = None,
    ):
        self.min_components = min_components
        self.max_components = max_components
        self.covariance_type = covariance_type
        self.criterion = criterion
        self.n_init = n_init
        self.refine = refine
        self.init_params = init_params
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_threads = n_threads
        self.callback = callback

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None) -> GaussianMixtureIC:
        """Fit every model of the grid and keep the best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 stays float32, other dtypes become float64.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative frequency weights, used in every fit and criterion
            (``n = sum(sample_weight)`` in the BIC penalty).

        Returns
        -------
        self : GaussianMixtureIC
        """
        types = self._validate_hyperparameters()
        X = check_data(X, "X")
        N, D = X.shape
        if self.max_components > N:
            raise ValueError(
                f"max_components={self.max_components} exceeds n_samples={N}"
            )
        sw = check_sample_weight(sample_weight, N)
        if sw.shape[0] and np.count_nonzero(sw) < self.max_components:
            raise ValueError(
                f"sample_weight has {np.count_nonzero(sw)} positive entries; "
                f"max_components={self.max_components} needs at least as many"
            )
        source = ArraySource(X, sw)
        rng = check_random_state(self.random_state)
        grid = _Grid(self.criterion)
        with single_threaded_blas():
            stopped = self._sweep(source, types, rng, grid)
            if self.refine and not stopped:
                self._refine(source, types, grid)
        self._warn(grid)
        best = grid.best()
        if best is None:
            raise ValueError(
                "No model of the grid could be fitted: "
                + "; ".join(f"{k}: {e}" for k, e in grid.errors.items())
            )
        self._set_fitted(grid, best, D)
        return self

    def _sweep(self, source, types, rng, grid: _Grid) -> bool:
        """Fit the grid; returns True when the callback stopped it."""
        ks = range(self.min_components, self.max_components + 1)
        n_models = len(ks) * len(types)
        for K in ks:
            try:
                inits = [
                    _initial_stats(
                        source, K, "full", self.init_params, rng, self.n_threads
                    )
                    for _ in range(self.n_init)
                ]
                init_error = None
            except ValueError as exc:  # e.g. fewer distinct rows than K
                inits, init_error = [], str(exc)
            for cov in types:
                initialize = self._initializer(inits, cov)
                if init_error is None:
                    outcome = self._fit_model(source, cov, initialize, self.n_init)
                else:
                    outcome = _Outcome(None, None, init_error, False, 0.0)
                row = grid.record(K, cov, source.n_features, outcome)
                if self._report(row, f"[{len(grid.rows)}/{n_models}]"):
                    return True
        return False

    def _initializer(self, inits, cov: str) -> Callable[[], g.GaussianParams]:
        """Initial parameters of one covariance type from the shared
        full-scatter statistics, one set per call."""
        pending = iter(inits)

        def initialize() -> g.GaussianParams:
            s = next(pending)
            stats = g.stats_from_scatter(cov, s.nk, s.sum_x, s.sum_xx, s.shift)
            return _initial_params(stats, self.reg_covar)

        return initialize

    def _refine(self, source, types, grid: _Grid) -> None:
        """Split-and-merge refinement below each type's best size.

        For each covariance type, the two sizes below the current best are
        re-fitted from the next larger fitted model with its two closest
        components merged (the moment-matched merge of least cost, Runnalls
        2007; the merge move of Ueda et al. 2000).  A re-fit replaces the
        first fit when its log-likelihood is higher; when that makes a
        smaller model the best of its type, the walk continues below it.
        Independent initialisations at each size can miss an optimum that
        the next larger fit has found (two true clusters merged by k-means,
        one split in two); a merge recovers it.
        """
        crit = self.criterion
        for cov in types:
            tried: set[int] = set()
            while True:
                k_best = grid.best_size(cov)
                if k_best is None:
                    break
                moved = False
                for K in (k_best - 1, k_best - 2):
                    parent = grid.run(K + 1, cov)
                    if K < self.min_components or K in tried or parent is None:
                        continue
                    tried.add(K)
                    merged = merge_closest_components(parent.params)
                    if merged is None:
                        continue
                    outcome = self._fit_model(source, cov, lambda m=merged: m, 1)
                    row = grid.offer(K, cov, source.n_features, outcome)
                    if row is None:
                        continue
                    if self._report(row, "[refined]"):
                        return
                    if row[crit] < grid.row(k_best, cov)[crit]:
                        moved = True
                if not moved:
                    break

    def _report(self, row, prefix: str) -> bool:
        """Progress line and callback; True when the callback asks to stop."""
        if self.verbose:
            stderr_reporter(_progress_line(prefix, row, self.criterion))
        return self.callback is not None and self.callback(dict(row)) is True

    def _fit_model(self, source, cov: str, initialize, n_init: int) -> _Outcome:
        """EM for one model, then one E-step with its fitted parameters."""
        start = time.perf_counter()
        family = GaussianEM(cov, self.reg_covar, self.n_threads)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                run = em.fit_em(
                    family,
                    source,
                    initialize,
                    n_init=n_init,
                    tol=self.tol,
                    max_iter=self.max_iter,
                    report=stderr_reporter if self.verbose >= 2 else None,
                    verbose_interval=self.verbose_interval,
                )
                stats = family.e_step(source, run.params)
                error = None
            except ValueError as exc:  # singular covariance, failed re-seed
                run, stats, error = None, None, str(exc)
        degenerate = False
        for w in caught:
            if issubclass(w.category, DegenerateComponentWarning):
                degenerate = True
            elif not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(
                    w.message, w.category, w.filename, w.lineno, source=w.source
                )
        return _Outcome(run, stats, error, degenerate, time.perf_counter() - start)

    def _warn(self, grid: _Grid) -> None:
        if grid.errors:
            warnings.warn(
                f"{len(grid.errors)} model(s) could not be fitted and were given "
                "an infinite criterion: "
                + "; ".join(f"{k}: {e}" for k, e in grid.errors.items()),
                UserWarning,
                stacklevel=3,
            )
        if grid.reseeded:
            warnings.warn(
                "Components became empty or singular and were re-seeded in: "
                + "; ".join(sorted(grid.reseeded)),
                DegenerateComponentWarning,
                stacklevel=3,
            )
        unconverged = [
            _model_name(r["n_components"], r["covariance_type"])
            for r in grid.rows
            if not r["converged"] and np.isfinite(r[self.criterion])
        ]
        if unconverged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge for: "
                + "; ".join(unconverged)
                + ". Try increasing max_iter or tol.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _set_fitted(self, grid: _Grid, best: int, n_features: int) -> None:
        row = grid.rows[best]
        run = grid.runs[best]
        K, cov = int(row["n_components"]), str(row["covariance_type"])
        model = GaussianMixture(
            K,
            covariance_type=cov,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=self.random_state,
            n_threads=self.n_threads,
        )
        model._set_fitted_run(run, n_features)
        self.best_estimator_ = model
        self.best_params_ = {"n_components": K, "covariance_type": cov}
        self.n_components_ = K
        self.covariance_type_ = cov
        self.best_criterion_ = float(row[self.criterion])
        self.criterion_table_ = _make_table(grid.rows)
        self.n_features_in_ = n_features

    # ------------------------------------------------------------ validation

    def _validate_hyperparameters(self) -> tuple[str, ...]:
        check_int(self.min_components, "min_components", 1)
        check_int(self.max_components, "max_components", 1)
        if self.max_components < self.min_components:
            raise ValueError(
                f"max_components={self.max_components} must be >= "
                f"min_components={self.min_components}"
            )
        types = _covariance_types(self.covariance_type)
        check_option(self.criterion, "criterion", CRITERIA)
        check_int(self.n_init, "n_init", 1)
        if not isinstance(self.refine, (bool, np.bool_)):
            raise TypeError(f"refine must be a bool, got {self.refine!r}")
        check_option(self.init_params, "init_params", INIT_METHODS)
        check_real(self.tol, "tol")
        check_real(self.reg_covar, "reg_covar")
        check_int(self.max_iter, "max_iter", 0)
        check_run_options(self)
        return types

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "best_estimator_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator."
            )

    # ------------------------------------------------ the best model's methods

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then label each row of ``X`` with the best model.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row under the best model.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        self._check_is_fitted()
        return self.best_estimator_.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component of the best model.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components_)
        """
        self._check_is_fitted()
        return self.best_estimator_.predict_proba(X)

    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood of each row under the best model.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        self._check_is_fitted()
        return self.best_estimator_.score_samples(X)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean (optionally weighted) log-likelihood under the best model."""
        self._check_is_fitted()
        return self.best_estimator_.score(X, sample_weight=sample_weight)

    def bic(self, X, sample_weight=None) -> float:
        """BIC of the best model on ``X`` (lower is better)."""
        self._check_is_fitted()
        return self.best_estimator_.bic(X, sample_weight=sample_weight)

    def aic(self, X, sample_weight=None) -> float:
        """AIC of the best model on ``X`` (lower is better)."""
        self._check_is_fitted()
        return self.best_estimator_.aic(X, sample_weight=sample_weight)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the best model.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        self._check_is_fitted()
        return self.best_estimator_.sample(n_samples)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _covariance_types(value) -> tuple[str, ...]:
    """``'all'``, one type, or a non-empty sequence of distinct types."""
    if isinstance(value, str):
        if value == "all":
            return g.COVARIANCE_TYPES
        return (check_option(value, "covariance_type", g.COVARIANCE_TYPES),)
    try:
        types = tuple(value)
    except TypeError:
        raise TypeError(
            "covariance_type must be 'all', a covariance type or a sequence of "
            f"them, got {value!r}"
        ) from None
    if not types:
        raise ValueError("covariance_type is an empty sequence")
    for t in types:
        check_option(t, "covariance_type", g.COVARIANCE_TYPES)
    if len(set(types)) != len(types):
        raise ValueError(f"covariance_type has duplicates: {list(types)!r}")
    return types


def _initial_params(stats: g.GaussianStats, reg_covar: float) -> g.GaussianParams:
    """Parameters from initial statistics (as ``initial_params`` does)."""
    params, _ = g.m_step(stats, reg_covar)
    _, bad = g.precisions_cholesky_from_covariances(
        params.covariances, params.covariance_type
    )
    if bad:
        raise ValueError(
            f"Initial covariance of component(s) {bad} is not positive definite; "
            "increase reg_covar."
        )
    return params


def _model_name(K: int, cov: str) -> str:
    return f"n_components={K}, covariance_type={cov!r}"


@dataclass
class _Outcome:
    """One EM fit of the grid, with the statistics of its final E-step."""

    run: em.EMRun | None
    stats: g.GaussianStats | None
    error: str | None
    degenerate: bool
    elapsed: float


class _Grid:
    """The rows of the criterion table and the runs behind them."""

    def __init__(self, criterion: str):
        self.criterion = criterion
        self.rows: list[dict[str, Any]] = []
        self.runs: list[em.EMRun | None] = []
        self.index: dict[tuple[int, str], int] = {}
        self.errors: dict[str, str] = {}
        self.reseeded: set[str] = set()

    def record(self, K: int, cov: str, D: int, out: _Outcome) -> dict[str, Any]:
        row = _table_row(K, cov, D, out, refined=False)
        self.index[(K, cov)] = len(self.rows)
        self.rows.append(row)
        self.runs.append(out.run)
        self._note(K, cov, out)
        return row

    def offer(self, K: int, cov: str, D: int, out: _Outcome) -> dict[str, Any] | None:
        """Replace the row of ``(K, cov)`` when ``out`` has a higher
        log-likelihood; returns the new row, or None when it was not kept."""
        i = self.index[(K, cov)]
        old = self.rows[i]
        if out.stats is None or not (out.stats.log_likelihood > old["log_likelihood"]):
            old["fit_time"] += out.elapsed
            return None
        row = _table_row(K, cov, D, out, refined=True)
        row["fit_time"] += old["fit_time"]
        self.rows[i] = row
        self.runs[i] = out.run
        name = _model_name(K, cov)
        self.errors.pop(name, None)
        self.reseeded.discard(name)
        self._note(K, cov, out)
        return row

    def _note(self, K: int, cov: str, out: _Outcome) -> None:
        name = _model_name(K, cov)
        if out.error is not None:
            self.errors[name] = out.error
        if out.degenerate:
            self.reseeded.add(name)

    def row(self, K: int, cov: str) -> dict[str, Any]:
        return self.rows[self.index[(K, cov)]]

    def run(self, K: int, cov: str) -> em.EMRun | None:
        i = self.index.get((K, cov))
        return None if i is None else self.runs[i]

    def best_size(self, cov: str) -> int | None:
        """The size with the lowest finite criterion for one covariance type."""
        sizes = [
            (self.rows[i][self.criterion], K)
            for (K, c), i in self.index.items()
            if c == cov and np.isfinite(self.rows[i][self.criterion])
        ]
        return min(sizes)[1] if sizes else None

    def best(self) -> int | None:
        """Row of the lowest finite criterion (first in fitting order on ties)."""
        scores = np.array([r[self.criterion] for r in self.rows], dtype=np.float64)
        if not np.isfinite(scores).any():
            return None
        return int(np.argmin(np.where(np.isfinite(scores), scores, np.inf)))


def merge_closest_components(params: g.GaussianParams) -> g.GaussianParams | None:
    """The mixture with its two closest components merged into one.

    "Closest" is the pair whose moment-matched merge has the smallest
    Runnalls (2007) cost ``(w_ij log|S_ij| - w_i log|S_i| - w_j log|S_j|) / 2``,
    an upper bound on the Kullback-Leibler discrimination the merge
    introduces.  The merged component keeps the covariance structure
    (``diag``: the diagonal of the merged covariance; ``spherical``: its
    mean; ``tied``: the shared covariance).  Returns None for a single
    component or when the merged covariance is not positive definite.
    """
    cov = params.covariance_type
    K, D = params.means.shape
    if K < 2:
        return None
    w, mu, c = params.weights, params.means, params.covariances
    if cov == "full":
        S = c
    elif cov == "tied":
        S = np.broadcast_to(c, (K, D, D))
    elif cov == "diag":
        S = c[:, :, None] * np.eye(D)
    else:
        S = c[:, None, None] * np.eye(D)
    logdet = np.linalg.slogdet(S)[1]
    best = (np.inf, 0, 1, None)
    for i in range(K):
        for j in range(i + 1, K):
            wij = w[i] + w[j]
            if not wij > 0:
                a = b = 0.5
            else:
                a, b = w[i] / wij, w[j] / wij
            d = mu[i] - mu[j]
            Sij = a * S[i] + b * S[j] + a * b * np.outer(d, d)
            sign, ld = np.linalg.slogdet(Sij)
            if sign <= 0:
                continue
            cost = 0.5 * (wij * ld - w[i] * logdet[i] - w[j] * logdet[j])
            if cost < best[0]:
                best = (cost, i, j, Sij)
    _, i, j, Sij = best
    if Sij is None:
        return None
    keep = np.array([k for k in range(K) if k != j])
    wij = w[i] + w[j]
    a = w[i] / wij if wij > 0 else 0.5
    means = mu.copy()
    means[i] = a * mu[i] + (1 - a) * mu[j]
    weights = w.copy()
    weights[i] = wij
    if cov == "tied":
        covariances = c.copy()
    else:
        covariances = c.copy()
        covariances[i] = {
            "full": Sij,
            "diag": np.diag(Sij),
            "spherical": np.diag(Sij).mean(),
        }[cov]
        covariances = covariances[keep]
    weights, means = weights[keep], means[keep]
    weights = weights / weights.sum()
    prec_chol, bad = g.precisions_cholesky_from_covariances(covariances, cov)
    if bad:
        return None
    return g.GaussianParams(cov, weights, means, covariances, prec_chol)


def _table_row(
    K: int, cov: str, D: int, out: _Outcome, refined: bool
) -> dict[str, Any]:
    p = g.n_parameters(cov, K, D)
    if out.stats is None:
        crit = {
            "log_likelihood": -np.inf,
            "entropy": 0.0,
            "bic": np.inf,
            "aic": np.inf,
            "icl": np.inf,
        }
    else:
        crit = information_criteria(out.stats, p)
    run = out.run
    return {
        "n_components": K,
        "covariance_type": cov,
        "n_parameters": p,
        **crit,
        "converged": bool(run.converged) if run is not None else False,
        "n_iter": int(run.n_iter) if run is not None else 0,
        "refined": refined,
        "fit_time": float(out.elapsed),
    }


def _progress_line(prefix: str, row: dict[str, Any], criterion: str) -> str:
    state = "" if row["converged"] else ", not converged"
    return (
        f"{prefix} {_model_name(row['n_components'], row['covariance_type'])}: "
        f"{criterion}={row[criterion]:.6g} "
        f"({row['n_iter']} iterations, {row['fit_time']:.2f}s{state})"
    )


def _make_table(rows: list[dict[str, Any]]):
    dtypes = {
        "n_components": np.int64,
        "covariance_type": object,
        "n_parameters": np.int64,
        "converged": bool,
        "n_iter": np.int64,
        "refined": bool,
    }
    table = {
        col: np.array([r[col] for r in rows], dtype=dtypes.get(col, np.float64))
        for col in TABLE_COLUMNS
    }
    try:
        import pandas as pd
    except ImportError:
        return table
    return pd.DataFrame(table)


def select_n_components(
    estimator,
    X,
    n_components: Sequence[int] = range(1, 11),
    *,
    criterion: str = "bic",
    sample_weight=None,
):
    """Fit ``estimator`` for every ``n_components`` and keep the best by BIC/AIC.

    Works for every fastem mixture (``BernoulliMixture``, ``PoissonMixture``,
    ``MultinomialMixture``, ``StudentTMixture``, ``GaussianMixture``, ...) and
    every input they accept (in memory, sparse, out of core, Dask).  For
    Gaussian mixtures, :class:`GaussianMixtureIC` also sweeps the covariance
    types, shares initialisations across them and offers ICL.

    Parameters
    ----------
    estimator : fastem mixture estimator
        A template: its parameters are copied, ``n_components`` replaced.
    X : array-like of shape (n_samples, n_features)
    n_components : sequence of int, default=range(1, 11)
    criterion : {'bic', 'aic'}, default='bic'
        Lower is better (scikit-learn's convention).
    sample_weight : array-like of shape (n_samples,), optional
        Used in the fits and in the criterion (``n = sum(weights)``).

    Returns
    -------
    best : estimator
        A fitted copy of ``estimator`` with the best ``n_components``.
    table : dict of ndarray
        ``n_components``, the criterion of each fit, and its mean
        log-likelihood bound and iteration count.
    """
    check_option(criterion, "criterion", ("bic", "aic"))
    sizes = [check_int(k, "n_components", 1) for k in n_components]
    if not sizes:
        raise ValueError("n_components must hold at least one value")
    params = estimator.get_params()
    scores, bounds, iters, fitted = [], [], [], []
    for k in sizes:
        model = type(estimator)(**{**params, "n_components": k})
        model.fit(X, sample_weight=sample_weight)
        score = getattr(model, criterion)(X, sample_weight=sample_weight)
        scores.append(float(score))
        bounds.append(float(model.lower_bound_))
        iters.append(int(model.n_iter_))
        fitted.append(model)
    best = int(np.argmin(scores))
    table = {
        "n_components": np.asarray(sizes),
        criterion: np.asarray(scores),
        "lower_bound": np.asarray(bounds),
        "n_iter": np.asarray(iters),
    }
    return fitted[best], table
