"""Mixtures for binary and count data: ``BernoulliMixture``,
``PoissonMixture`` and ``MultinomialMixture``.

All three run on the generic EM driver with the fused log-linear kernels of
:mod:`fastem._kernels.discrete` (one pass per iteration, no
``(n_samples, n_components)`` array), accept ``sample_weight``, float32 and
``scipy.sparse`` input (any format; converted to CSR, never to dense), and
give the same results for any number of threads.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ._estimator import MixtureEstimator, check_weights_init
from ._validation import check_int, check_param_array, check_random_state
from .families import discrete as d

_COMMON_DOC = """\
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    max_iter : int, default=100
        EM iterations per initialisation (0 keeps the initial parameters).
    n_init : int, default=1
        Initialisations; the best final lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the initial parameters are chosen.  ``'kmeans'`` runs k-means on
        at most 131072 rows drawn from ``X`` (%(kmeans_rows)s) and estimates
        each component from one cluster; ``'k-means++'`` and
        ``'random_from_data'`` fit each component to one chosen row;
        ``'random'`` draws random responsibilities for every row.
    weights_init : array-like of shape (n_components,), optional
        User-given initial weights.
    means_init : array-like of shape (n_components, n_features), optional
        User-given initial %(means)s.
    random_state : int, RandomState or None, default=None
        Seed for initialisation and :meth:`sample`.
    warm_start : bool, default=False
        Continue from the previous fit's parameters (``n_init`` is ignored).
    verbose : int, default=0
        1 or more writes progress to standard error every ``verbose_interval``
        iterations.
    verbose_interval : int, default=10
        Iterations between progress lines.
    n_threads : int or None, default=None
        Threads for the kernels: None keeps numba's current setting, -1
        uses all.  Results are bit-identical for any value.
    callback : callable or None, default=None
        ``callback(iteration, lower_bound)`` after every EM iteration;
        returning ``True`` stops the current run.
    chunk_rows : int or None, default=None
        Rows per chunk when ``X`` is out of core (a ``numpy.memmap``, a path
        to an ``.npy`` file, an h5py/zarr array); default about 64 MiB of
        data per chunk.  Dask arrays and iterables of chunks are accepted
        too; the values of every chunk are checked before fitting.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
        The fitted %(means)s.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Penalised mean log-likelihood ``(log L + log prior) / sum(weights)``
        at the start of the last iteration of the best run, with the prior
        whose maximum a posteriori estimate the smoothed M-step computes
        (:mod:`fastem.families.discrete`); EM never decreases it.
    lower_bounds_ : list of float
        Lower bound of every iteration of the best run.
    n_features_in_ : int
"""


class _DiscreteMixture(MixtureEstimator):
    """Shared implementation of the three log-linear families.

    The constructor is shared too (the families have the same parameters);
    a family whose ``alpha`` has another default takes a copy of it made by
    :func:`_with_default_alpha`, so that its signature, ``get_params`` and
    ``repr`` show its own default.
    """

    _kind = ""

    def __init__(
        self,
        n_components: int = 1,
        *,
        alpha: float = 1.0,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        n_threads: int | None = None,
        callback: Callable[[int, float], Any] | None = None,
        chunk_rows: int | None = None,
    ):
        self.n_components = n_components
        self.alpha = alpha
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_threads = n_threads
        self.callback = callback
        self.chunk_rows = chunk_rows

    def _smoothing(self) -> float:
        return float(self.alpha)

    def _validate_family_hyperparameters(self) -> None:
        value = self.alpha
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"alpha must be a real number, got {type(value).__name__}")
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"alpha must be a finite number > 0, got {value}")

    _accepts_sparse = True

    def _value_check(self):
        return functools.partial(d.check_values, kind=self._kind)

    def _make_family(self):
        return d.DiscreteEM(self._kind, self._smoothing(), self.n_threads)

    def _validated_inits(self, n_features: int) -> dict[str, Any]:
        K, D = self.n_components, n_features
        out: dict[str, Any] = {"weights_init": None, "means_init": None}
        if self.weights_init is not None:
            out["weights_init"] = check_weights_init(self.weights_init, K)
        if self.means_init is not None:
            out["means_init"] = self._check_means_init(
                check_param_array(self.means_init, "means_init", (K, D))
            )
        return out

    def _check_means_init(self, m: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _initial_params(self, source, rng, inits):
        return d.initial_params(
            source,
            self._kind,
            self.n_components,
            self._smoothing(),
            self.init_params,
            rng,
            n_threads=self.n_threads,
            **inits,
        )

    def _set_params_from(self, params: d.DiscreteParams) -> None:
        self._check_finite(weights=params.weights, means=params.means)
        self._params = params
        self.weights_ = params.weights
        self.means_ = params.means

    def _restore_fitted(self, arrays: dict[str, np.ndarray]) -> None:
        self._set_params_from(
            d.DiscreteParams(
                self._kind,
                np.asarray(arrays["weights_"], dtype=np.float64),
                np.asarray(arrays["means_"], dtype=np.float64),
            )
        )

    def _per_row_function(self):
        return d.per_row

    def _n_parameters(self) -> int:
        return d.n_parameters(self._kind, self.n_components, self.means_.shape[1])

    def _sample(self, n_samples, rng):
        return d.sample(self._params, n_samples, rng)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        return tags


def _with_default_alpha(init: Callable, alpha: float) -> Callable:
    """A copy of the constructor ``init`` whose default ``alpha`` is ``alpha``.

    Parameters
    ----------
    init : function
        ``_DiscreteMixture.__init__``.
    alpha : float
        The new default of the keyword-only parameter ``alpha``.

    Returns
    -------
    init : function
        The same code with the new default (seen by :func:`inspect.signature`
        and so by ``get_params``, ``repr`` and ``sklearn.base.clone``).
    """
    copy = types.FunctionType(
        init.__code__, init.__globals__, init.__name__, init.__defaults__
    )
    copy.__kwdefaults__ = {**init.__kwdefaults__, "alpha": alpha}
    copy.__annotations__ = dict(init.__annotations__)
    copy.__qualname__ = init.__qualname__
    copy.__doc__ = init.__doc__
    return copy


class BernoulliMixture(_DiscreteMixture):
    """Mixture of multivariate Bernoulli distributions (binary data).

    Component ``k`` gives feature ``d`` the value 1 with probability
    ``means_[k, d]``, independently across features.  The M-step smooths
    the probabilities additively, ``(sum_i r_ik x_id + alpha) / (sum_i r_ik
    + 2 alpha)`` (as scikit-learn's ``BernoulliNB``), which keeps them inside
    (0, 1).

    ``X`` must hold only 0 and 1 (any numeric or boolean dtype, dense or
    ``scipy.sparse``); other values raise ``ValueError`` naming the column.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    alpha : float, default=1.0
        Additive smoothing of the probabilities (> 0).
    """

    __doc__ += _COMMON_DOC % {
        "means": "per-feature probabilities of a 1",
        "kmeans_rows": "the binary rows",
    }

    _kind = "bernoulli"

    def _check_means_init(self, m):
        if not ((m > 0) & (m < 1)).all():
            raise ValueError(
                "means_init must hold probabilities strictly between 0 and 1 "
                f"for a Bernoulli mixture, got min {m.min()!r}, max {m.max()!r}"
            )
        return m


class PoissonMixture(_DiscreteMixture):
    """Mixture of independent Poisson distributions (count data).

    Component ``k`` draws feature ``d`` from a Poisson distribution with rate
    ``means_[k, d]``, independently across features.  The M-step rate is
    ``(sum_i r_ik x_id + alpha) / sum_i r_ik``: ``alpha`` pseudo-counts keep
    every rate positive (a feature that is zero in all the rows of a
    component gets a small rate, not zero).

    ``X`` must hold non-negative integers (any numeric dtype, dense or
    ``scipy.sparse``); other values raise ``ValueError`` naming the column.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    alpha : float, default=1e-2
        Pseudo-count added to every feature total of every component (> 0).
    """

    __doc__ += _COMMON_DOC % {"means": "rates", "kmeans_rows": "the raw counts"}

    _kind = "poisson"

    __init__ = _with_default_alpha(_DiscreteMixture.__init__, 1e-2)

    def _check_means_init(self, m):
        if not (m > 0).all():
            raise ValueError(
                f"means_init must hold positive rates for a Poisson mixture, got "
                f"min {m.min()!r}"
            )
        return m


class MultinomialMixture(_DiscreteMixture):
    """Mixture of multinomial distributions (count vectors, bag of words).

    A row ``x`` with total ``n = sum_d x_d`` has, under component ``k``, the
    multinomial probability ``n! / prod_d x_d! prod_d means_[k, d] ** x_d``:
    each component is a distribution over the features (a "topic" over
    words).  The M-step smooths additively, ``(sum_i r_ik x_id + alpha) /
    (sum_i r_ik n_i + D alpha)`` (as scikit-learn's ``MultinomialNB``).

    ``X`` must hold non-negative integers; ``scipy.sparse`` input (e.g. the
    output of a ``CountVectorizer``) is used as CSR without densifying it.
    Rows whose counts are all zero are allowed (they have probability 1
    under every component).

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    alpha : float, default=1.0
        Additive smoothing of the word distributions (> 0).
    """

    __doc__ += _COMMON_DOC % {
        "means": "word distributions (rows sum to 1)",
        "kmeans_rows": "rows scaled to unit Euclidean length",
    }
    __doc__ += """    mean_total_count_ : float
        Weighted mean of the row totals of the training data (the default
        number of trials of :meth:`sample`).
"""

    _kind = "multinomial"
    _fitted_arrays = ("weights_", "means_", "mean_total_count_")

    def _check_means_init(self, m):
        if not (m > 0).all():
            raise ValueError(
                "means_init must hold positive probabilities for a multinomial "
                f"mixture, got min {m.min()!r}"
            )
        sums = m.sum(axis=1)
        if np.abs(sums - 1.0).max() > 1e-8:
            k = int(np.argmax(np.abs(sums - 1.0)))
            raise ValueError(
                f"each row of means_init must sum to 1; row {k} sums to {sums[k]!r}"
            )
        return m / sums[:, None]

    def _after_fit(self, source) -> None:
        total, weight = source.map_reduce(d.weighted_row_total)
        self.mean_total_count_ = float(total / weight)

    def _restore_fitted(self, arrays):
        super()._restore_fitted(arrays)
        self.mean_total_count_ = float(arrays["mean_total_count_"])

    def sample(self, n_samples: int = 1, n_trials: int | None = None):
        """Draw samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows.
        n_trials : int or None, default=None
            Total count of every row; None uses the rounded
            ``mean_total_count_``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Counts (float64), grouped by component.
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        self._check_is_fitted()
        check_int(n_samples, "n_samples", 1)
        if n_trials is None:
            n_trials = round(self.mean_total_count_)
        check_int(n_trials, "n_trials", 0)
        rng = check_random_state(self.random_state)
        return d.sample(self._params, n_samples, rng, n_trials=n_trials)
