"""Bernoulli, Poisson and multinomial mixture families.

The three share the statistics ``nk[k] = sum_i r_ik`` and
``sum_x[k, d] = sum_i r_ik x_id`` (``r`` the responsibilities times the row
weights) and the log-linear E-step of :mod:`fastem._kernels.discrete`; they
differ in the M-step and in the row term of the log-density.

M-steps (``a = alpha`` the smoothing, > 0) are maximum a posteriori steps:

* weights: ``(nk_k + 10 eps) / sum(nk + 10 eps)`` (as the Gaussian family;
  a Dirichlet(1 + 10 eps) prior),
* Bernoulli: ``p_kd = (sum_x_kd + a) / (nk_k + 2 a)`` (additive smoothing as
  in scikit-learn's ``BernoulliNB``; a Beta(a + 1, a + 1) prior),
* multinomial: ``theta_kd = (sum_x_kd + a) / (sum_d' sum_x_kd' + D a)`` (as
  in ``MultinomialNB``; a Dirichlet(a + 1) prior),
* Poisson: ``lambda_kd = (sum_x_kd + a) / (nk_k + 10 eps)`` (``a`` pseudo-counts
  added to every feature of every component; a Gamma(a + 1, rate 10 eps)
  prior).

``means`` holds ``p``, ``lambda`` or ``theta``.  With ``a > 0`` every
log-parameter is finite, so no fitted model holds NaN or infinity.  EM then
never decreases the *penalised* log-likelihood ``log L + log prior``, which
is the lower bound the family reports (:meth:`DiscreteEM.lower_bound`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.special import gammaln

from .. import _kmeans
from .._kernels import discrete as _k
from .._layout import block_rows, n_tasks, per_row_tasks, task_rows
from .._parallel import run_tasks
from .._sparse import CSRSource, csr_arrays
from ..sources import ArraySource

KINDS = ("bernoulli", "poisson", "multinomial")
_KIND_CODE = {"bernoulli": 0, "poisson": 1, "multinomial": 2}
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
_EPS10 = 10 * np.finfo(np.float64).eps
#: Bound on the elements of the per-task ``sum_x`` accumulators: with many
#: features (text) fewer tasks are used.  A function of the shape only.
_MAX_ACCUMULATOR_ELEMENTS = 1 << 22
#: Rows of a sparse block (the ``(K, block)`` buffers of the E-step).
_SPARSE_BLOCK = 128
#: Size of the table of ``log(n!)``; larger counts use ``math.lgamma``.
_LOGFACT_SIZE = 1024
#: Largest float64 below 1: Bernoulli probabilities are kept below it.
_ONE_MINUS = float(np.nextafter(1.0, 0.0))


@functools.cache
def _logfact() -> np.ndarray:
    return gammaln(np.arange(_LOGFACT_SIZE, dtype=np.float64) + 1.0)


@dataclass(frozen=True)
class DiscreteParams:
    """Parameters of a Bernoulli, Poisson or multinomial mixture.

    ``weights`` (K,) sum to 1; ``means`` (K, D) holds per-feature
    probabilities (Bernoulli, in (0, 1)), rates (Poisson, positive) or word
    distributions (multinomial, positive rows summing to 1).
    """

    kind: str
    weights: np.ndarray
    means: np.ndarray

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def log_linear(self) -> tuple[np.ndarray, np.ndarray]:
        """``(c, A)`` with ``log p(x, k) = c[k] + x . A[k] + rho(x)``."""
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        m = self.means
        if self.kind == "bernoulli":
            log_q = np.log1p(-m)
            A = np.log(m) - log_q
            c = log_w + log_q.sum(axis=1)
        elif self.kind == "poisson":
            A = np.log(m)
            c = log_w - m.sum(axis=1)
        else:
            A = np.log(m)
            c = log_w
        return np.ascontiguousarray(c), np.ascontiguousarray(A)


@dataclass(frozen=True)
class DiscreteStats:
    """Additive statistics of a discrete mixture over some rows.

    ``nk`` (K,) and ``sum_x`` (K, D) as in the module docstring;
    ``log_likelihood = sum_i w_i log p(x_i)``, ``total_weight = sum_i w_i`` and
    ``expected_log_joint = sum_i sum_k r_ik log p(x_i, k)`` under the
    parameters of the E-step.  Statistics of disjoint rows add (``a + b``).
    """

    kind: str
    nk: np.ndarray
    sum_x: np.ndarray
    log_likelihood: float
    total_weight: float
    expected_log_joint: float = 0.0
    #: Log-density of the smoothing prior at the E-step's parameters (set
    #: once for a whole pass by :meth:`DiscreteEM.e_step`; 0 for a chunk).
    log_prior: float = 0.0

    def __add__(self, other: DiscreteStats) -> DiscreteStats:
        if other.kind != self.kind:
            raise ValueError("only statistics of the same family can be added")
        return replace(
            self,
            nk=self.nk + other.nk,
            sum_x=self.sum_x + other.sum_x,
            log_likelihood=self.log_likelihood + other.log_likelihood,
            total_weight=self.total_weight + other.total_weight,
            expected_log_joint=self.expected_log_joint + other.expected_log_joint,
            log_prior=self.log_prior + other.log_prior,
        )


# ---------------------------------------------------------------------------
# Input values
# ---------------------------------------------------------------------------


def check_values(X, kind: str, name: str = "X") -> None:
    """Raise ``ValueError`` naming the first offending column when ``X``
    (a validated dense array or CSR matrix) holds values outside the support
    of ``kind``: 0/1 for Bernoulli, non-negative integers otherwise."""
    if kind == "bernoulli":
        what = "binary values (0 or 1)"

        def bad_of(v):
            return (v != 0) & (v != 1)
    else:
        what = "non-negative integer counts"

        def bad_of(v):
            return (v < 0) | (v != np.floor(v))

    if sparse.issparse(X):
        bad = bad_of(X.data)
        if not bad.any():
            return
        j = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(X.indptr, j, side="right") - 1)
        col = int(X.indices[j])
        value = X.data[j]
        in_col = int(np.count_nonzero(X.indices[bad] == col))
        n_bad = int(bad.sum())
    else:
        step = max(1, (1 << 20) // max(1, X.shape[1]))
        for r0 in range(0, X.shape[0], step):
            bad = bad_of(X[r0 : r0 + step])
            if bad.any():
                row, col = (int(i) for i in np.argwhere(bad)[0])
                row += r0
                value = X[row, col]
                break
        else:
            return
        column = X[:, col]
        in_col = int(np.count_nonzero(bad_of(column)))
        n_bad = None
    noun = "entry" if in_col == 1 else "entries"
    total = "" if n_bad is None else f", {n_bad} in all"
    raise ValueError(
        f"{name} must contain {what} for a {kind} mixture; column {col} has "
        f"{float(value)!r} at row {row} ({in_col} such {noun} in column {col}"
        f"{total})"
    )


# ---------------------------------------------------------------------------
# E-step and per-row outputs
# ---------------------------------------------------------------------------


def layout(n_samples: int, n_features: int, n_components: int, is_sparse: bool):
    """``(n_tasks, task_rows, block)`` for a statistics kernel call.

    As :mod:`fastem._layout`, but with fewer tasks when ``n_tasks`` copies of
    the ``(K, D)`` accumulator would exceed ``2**22`` elements.  Depends on
    the shape only, so results do not depend on the number of threads.
    """
    N, D, K = int(n_samples), int(n_features), int(n_components)
    block = _SPARSE_BLOCK if is_sparse else block_rows(D)
    rows = task_rows(N, D)
    cap = max(1, _MAX_ACCUMULATOR_ELEMENTS // max(1, K * D))
    if n_tasks(N, D) > cap:
        rows = -(-N // cap)
    T = max(1, -(-N // rows))
    return T, rows, block


def e_step(
    X,
    sample_weight: np.ndarray,
    params: DiscreteParams,
    n_threads=None,
    row_terms: bool = True,
):
    """Statistics of validated rows ``X`` (dense array or CSR), in one pass.

    ``sample_weight`` has length 0 for unit weights.  With
    ``row_terms=False`` the component-independent terms ``rho(x)`` (log
    factorials) are left out of ``log_likelihood`` and
    ``expected_log_joint``; they do not change the responsibilities, and
    :class:`DiscreteEM` adds their sum (:func:`row_term_sum`, computed once
    per fit) instead of recomputing them every iteration.
    """
    N, D = X.shape
    K = params.n_components
    is_sp = sparse.issparse(X)
    T, rows, block = layout(N, D, K, is_sp)
    code = _KIND_CODE[params.kind] if row_terms else 0
    c, A = params.log_linear()
    nk = np.zeros((T, K))
    acc = np.zeros((T, 3))
    if is_sp:
        data, indices, indptr = csr_arrays(X)
        sxT = np.zeros((T, D, K))
        run_tasks(
            _k.estep_sparse,
            T,
            data,
            indices,
            indptr,
            sample_weight,
            code,
            c,
            np.ascontiguousarray(A.T),
            _logfact(),
            rows,
            block,
            nk,
            sxT,
            acc,
            n_threads=n_threads,
        )
        sum_x = np.ascontiguousarray(sxT.sum(axis=0).T)
    else:
        sx = np.zeros((T, K, D))
        run_tasks(
            _k.estep_dense,
            T,
            X,
            sample_weight,
            code,
            c,
            A,
            _logfact(),
            rows,
            block,
            nk,
            sx,
            acc,
            n_threads=n_threads,
        )
        sum_x = sx.sum(axis=0)
    ll, tw, joint = (float(v) for v in acc.sum(axis=0))
    return DiscreteStats(params.kind, nk.sum(axis=0), sum_x, ll, tw, joint)


def row_term_sum(X, sample_weight: np.ndarray, kind: str, n_threads=None) -> float:
    """``sum_i w_i rho(x_i)`` over the rows of ``X`` (dense or CSR): the part
    of the log-likelihood that does not depend on the parameters (additive
    over chunks)."""
    if kind == "bernoulli":
        return 0.0
    N, D = X.shape
    is_sp = sparse.issparse(X)
    T, rows, block = layout(N, D, 1, is_sp)
    out = np.zeros(T)
    code = _KIND_CODE[kind]
    if is_sp:
        data, indices, indptr = csr_arrays(X)
        run_tasks(
            _k.row_terms_sparse,
            T,
            data,
            indices,
            indptr,
            sample_weight,
            code,
            _logfact(),
            rows,
            out,
            n_threads=n_threads,
        )
    else:
        run_tasks(
            _k.row_terms_dense,
            T,
            X,
            sample_weight,
            code,
            _logfact(),
            rows,
            block,
            out,
            n_threads=n_threads,
        )
    return float(out.sum())


def per_row(
    X,
    params: DiscreteParams,
    *,
    log_likelihood: bool = False,
    responsibilities: bool = False,
    labels: bool = False,
    n_threads: int | None = None,
):
    """Per-row ``log p(x)``, ``p(k | x)`` and ``argmax_k p(x, k)`` as asked
    (``None`` for the others)."""
    N, D = X.shape
    K = params.n_components
    out_lse = np.empty(N if log_likelihood else 0)
    out_resp = np.empty((N if responsibilities else 0, K))
    out_label = np.empty(N if labels else 0, dtype=np.int64)
    code = _KIND_CODE[params.kind]
    c, A = params.log_linear()
    block = _SPARSE_BLOCK if sparse.issparse(X) else block_rows(D)
    T = per_row_tasks(N, block)
    if sparse.issparse(X):
        data, indices, indptr = csr_arrays(X)
        run_tasks(
            _k.per_row_sparse,
            T,
            data,
            indices,
            indptr,
            code,
            c,
            np.ascontiguousarray(A.T),
            _logfact(),
            _SPARSE_BLOCK,
            out_lse,
            out_resp,
            out_label,
            n_threads=n_threads,
        )
    else:
        run_tasks(
            _k.per_row_dense,
            T,
            X,
            code,
            c,
            A,
            _logfact(),
            block,
            out_lse,
            out_resp,
            out_label,
            n_threads=n_threads,
        )
    return (
        out_lse if log_likelihood else None,
        out_resp if responsibilities else None,
        out_label if labels else None,
    )


# ---------------------------------------------------------------------------
# M-step, counts, sampling
# ---------------------------------------------------------------------------


def means_from_sums(
    kind: str, nk: np.ndarray, sum_x: np.ndarray, smoothing: float
) -> np.ndarray:
    """Per-component parameters from ``nk`` (K,) and ``sum_x`` (K, D)."""
    a = float(smoothing)
    if kind == "bernoulli":
        # sum_x <= nk up to rounding; the clip keeps p < 1 when a is tiny.
        p = (np.minimum(sum_x, nk[:, None]) + a) / (nk[:, None] + 2.0 * a)
        return np.clip(p, np.finfo(np.float64).tiny, _ONE_MINUS)
    if kind == "poisson":
        return (sum_x + a) / (nk[:, None] + _EPS10)
    D = sum_x.shape[1]
    return (sum_x + a) / (sum_x.sum(axis=1, keepdims=True) + D * a)


def log_prior(params: DiscreteParams, smoothing: float) -> float:
    """Log-density (up to a constant) of the priors whose MAP estimates the
    M-step computes (module docstring)."""
    a = float(smoothing)
    m = params.means
    with np.errstate(divide="ignore"):
        out = _EPS10 * float(np.log(params.weights).sum())
    if params.kind == "bernoulli":
        out += a * float((np.log(m) + np.log1p(-m)).sum())
    elif params.kind == "poisson":
        out += a * float(np.log(m).sum()) - _EPS10 * float(m.sum())
    else:
        out += a * float(np.log(m).sum())
    return out


def m_step(stats: DiscreteStats, smoothing: float):
    """New parameters and the components whose responsibility mass is below
    ``10 eps`` of the total weight (to be re-seeded)."""
    nk = stats.nk + _EPS10
    weights = nk / nk.sum()
    means = means_from_sums(stats.kind, stats.nk, stats.sum_x, smoothing)
    empty = np.flatnonzero(stats.nk < _EPS10 * stats.total_weight)
    return DiscreteParams(stats.kind, weights, means), [int(k) for k in empty]


def n_parameters(kind: str, n_components: int, n_features: int) -> int:
    """Free parameters: ``K - 1`` weights plus ``K D`` (``K (D - 1)`` for the
    multinomial, whose rows sum to 1)."""
    K, D = n_components, n_features
    per = D - 1 if kind == "multinomial" else D
    return int(K * per + K - 1)


def sample(
    params: DiscreteParams,
    n_samples: int,
    rng: np.random.RandomState,
    n_trials=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and their component labels, grouped by component (as
    :func:`fastem.families.gaussian.sample`).  ``n_trials`` (multinomial
    only) is the total count of every row."""
    counts = rng.multinomial(n_samples, params.weights)
    D = params.n_features
    parts = []
    for k, n in enumerate(counts):
        n = int(n)
        m = params.means[k]
        if params.kind == "bernoulli":
            parts.append((rng.uniform(size=(n, D)) < m).astype(np.float64))
        elif params.kind == "poisson":
            parts.append(rng.poisson(m, size=(n, D)).astype(np.float64))
        else:
            parts.append(rng.multinomial(int(n_trials), m, size=n).astype(np.float64))
    X = np.vstack(parts)
    y = np.concatenate(
        [np.full(int(n), k, dtype=np.int64) for k, n in enumerate(counts)]
    )
    return X, y


# ---------------------------------------------------------------------------
# The family as seen by the driver
# ---------------------------------------------------------------------------


class DiscreteEM:
    """A Bernoulli, Poisson or multinomial mixture for :func:`fastem.em.fit_em`.

    Parameters
    ----------
    kind : {'bernoulli', 'poisson', 'multinomial'}
    smoothing : float
        The pseudo-count ``alpha`` (> 0).
    n_threads : int or None
        Threads for the kernels.
    """

    def __init__(self, kind: str, smoothing: float, n_threads=None):
        self.kind = kind
        self.smoothing = smoothing
        self.n_threads = n_threads
        self._row_constant = None

    def e_step(self, source, params: DiscreteParams) -> DiscreteStats:
        """One pass over ``source``; the log-factorial terms of the
        log-likelihood are summed on the first pass over a source and reused
        (they do not depend on the parameters)."""
        if self.kind == "bernoulli":
            constant = 0.0
        else:
            if self._row_constant is None or self._row_constant[0] is not source:
                total = source.map_reduce(row_term_sum, self.kind, self.n_threads)
                self._row_constant = (source, float(total))
            constant = self._row_constant[1]
        stats = source.map_reduce(e_step, params, self.n_threads, False)
        return replace(
            stats,
            log_likelihood=stats.log_likelihood + constant,
            expected_log_joint=stats.expected_log_joint + constant,
            log_prior=log_prior(params, self.smoothing),
        )

    def lower_bound(self, stats: DiscreteStats, new_params) -> float:
        """``(log L + log prior) / total weight`` at the E-step's parameters:
        the objective the smoothed EM never decreases."""
        return (stats.log_likelihood + stats.log_prior) / stats.total_weight

    def m_step(self, stats: DiscreteStats):
        return m_step(stats, self.smoothing)

    def reseed(self, source, params: DiscreteParams, degenerate: list[int]):
        """Move each empty component onto one of the worst-explained rows.

        The component gets the parameters of that single row (smoothed as in
        the M-step) and weight ``1/K``; the other weights are scaled to sum to
        ``1 - len(degenerate)/K`` (the Gaussian family's policy).
        """
        K = params.n_components
        bad = np.asarray(degenerate)
        good = np.setdiff1d(np.arange(K), bad)
        weights = params.weights.copy()
        weights[bad] = 0.0
        if good.size:
            probe = DiscreteParams(self.kind, weights, params.means)
            rows = self._worst_rows(source, probe, len(bad))
        else:
            rows = np.sort(
                np.random.RandomState(0).choice(source.n_samples, len(bad), False)
            )
        means = params.means.copy()
        points = source.rows(rows)
        means[bad] = means_from_sums(
            self.kind, np.ones(len(bad)), points, self.smoothing
        )
        new_w = np.full(K, 1.0 / K)
        if good.size:
            new_w[good] = weights[good] / weights[good].sum() * (1 - len(bad) / K)
        return DiscreteParams(self.kind, new_w, means)

    def _worst_rows(self, source, params, count):
        scores = np.concatenate(source.map_chunks(chunk_scores, params, self.n_threads))
        return np.sort(np.argsort(scores, kind="stable")[:count])


def chunk_scores(X, w, params, n_threads):
    """Per-row log-likelihood of a chunk, +inf for rows of weight zero."""
    lse = per_row(X, params, log_likelihood=True, n_threads=n_threads)[0]
    return np.where(w > 0, lse, np.inf) if w.shape[0] else lse


def weighted_row_total(X, w) -> np.ndarray:
    """``[sum_i w_i sum_d x_id, sum_i w_i]`` of a chunk (additive)."""
    n = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    if w.shape[0]:
        return np.array([float(w @ n), float(w.sum())])
    return np.array([float(n.sum()), float(n.shape[0])])


# ---------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------


def initial_params(
    source,
    kind: str,
    n_components: int,
    smoothing: float,
    init_params: str,
    rng: np.random.RandomState,
    *,
    weights_init=None,
    means_init=None,
    n_threads=None,
) -> DiscreteParams:
    """Initial parameters: responsibilities from ``init_params`` followed by
    an M-step, then ``weights_init``/``means_init`` override the estimates.
    When both are given no data pass is made.

    ``'kmeans'`` runs k-means on at most 131072 rows drawn from the data
    (rows scaled to unit length for the multinomial, raw otherwise) and
    estimates the parameters from that sample's clusters.  ``'k-means++'``
    and ``'random_from_data'`` put one component on each of ``K`` chosen
    rows; ``'random'`` draws uniform random responsibilities for every row.
    """
    K = n_components
    if weights_init is not None and means_init is not None:
        weights, means = weights_init, means_init
    else:
        nk, sum_x = _initial_sums(source, kind, K, init_params, rng, n_threads)
        weights = (nk + _EPS10) / (nk + _EPS10).sum()
        means = means_from_sums(kind, nk, sum_x, smoothing)
        if weights_init is not None:
            weights = weights_init
        if means_init is not None:
            means = means_init
    return DiscreteParams(
        kind, np.array(weights, dtype=np.float64), np.array(means, dtype=np.float64)
    )


def _initial_sums(source, kind, K, init_params, rng, n_threads):
    if init_params == "random":
        return _random_resp_sums(source, K, rng)
    if init_params == "random_from_data":
        idx = np.sort(rng.choice(source.n_samples, size=K, replace=False))
        return np.ones(K), source.rows(idx)
    Xs, ws = _kmeans_sample(source, rng)
    Z = _kmeans_rows(Xs, kind)
    if init_params == "k-means++":
        if sparse.issparse(Z):
            idx = _sparse_kmeans_plusplus(Z, ws, K, rng)
        else:
            idx = _kmeans.kmeans_plusplus(Z, ws, K, rng, n_threads)
        points = Xs[np.asarray(idx)]
        points = points.toarray() if sparse.issparse(points) else points
        return np.ones(K), np.asarray(points, dtype=np.float64)
    if sparse.issparse(Z):
        labels = _sparse_kmeans(Z, ws, K, rng)
    else:
        centers = _kmeans.kmeans(Z, ws, K, rng, n_threads)
        labels = _kmeans.assign(Z, ws, centers, n_threads)
    ww = ws if ws.shape[0] else np.ones(Xs.shape[0])
    onehot = sparse.csr_matrix(
        (ww, (labels, np.arange(Xs.shape[0]))), shape=(K, Xs.shape[0])
    )
    sum_x = onehot @ Xs
    sum_x = sum_x.toarray() if sparse.issparse(sum_x) else np.asarray(sum_x)
    nk = np.bincount(labels, weights=ww, minlength=K).astype(np.float64)
    return nk, np.asarray(sum_x, dtype=np.float64)


def _kmeans_sample(source, rng):
    """At most ``KMEANS_SUBSAMPLE`` rows drawn uniformly without replacement
    (all rows when there are fewer), and their weights."""
    N = source.n_samples
    n = min(N, _kmeans.KMEANS_SUBSAMPLE)
    if isinstance(source, (ArraySource, CSRSource)):
        X, w = source.X, source.sample_weight
        if n == N:
            return X, w
        idx = np.sort(rng.choice(N, n, replace=False))
        ws = w[idx] if w.shape[0] else w
        if ws.shape[0] and not ws.sum() > 0:
            return X, w
        return X[idx], ws
    idx = np.arange(N) if n == N else np.sort(rng.choice(N, n, replace=False))
    weighted = source.total_weight != N
    return source.rows(idx), source.weights(idx) if weighted else np.empty(0)


def _kmeans_rows(X, kind):
    """The rows k-means clusters: unit-length rows for the multinomial (so
    that documents of different lengths with the same word profile fall
    together), float64 copies of the raw rows otherwise."""
    if sparse.issparse(X):
        Z = sparse.csr_matrix(X, dtype=np.float64, copy=True)
        if kind == "multinomial":
            norms = np.sqrt(np.asarray(Z.multiply(Z).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            Z = sparse.diags(1.0 / norms) @ Z
        return sparse.csr_matrix(Z)
    Z = np.array(X, dtype=np.float64)
    if kind == "multinomial":
        norms = np.sqrt((Z * Z).sum(axis=1))
        norms[norms == 0] = 1.0
        Z /= norms[:, None]
    return np.ascontiguousarray(Z)


def _sq_dist(Z, sq, C):
    """Squared distances of the rows of sparse ``Z`` to the rows of ``C``."""
    cross = np.asarray(Z @ C.T)
    return np.maximum(sq[:, None] - 2.0 * cross + (C * C).sum(axis=1)[None, :], 0.0)


def _sparse_kmeans_plusplus(Z, w, K, rng):
    """Greedy k-means++ (``2 + log K`` local trials) on sparse rows."""
    m = Z.shape[0]
    ww = w if w.shape[0] else np.ones(m)
    sq = np.asarray(Z.multiply(Z).sum(axis=1)).ravel()
    n_trials = 2 + int(np.log(K))
    idx = [int(rng.choice(m, p=ww / ww.sum()))]
    closest = _sq_dist(Z, sq, Z[idx].toarray())[:, 0]
    for c in range(1, K):
        potential = float(closest @ ww)
        if not potential > 0:
            raise ValueError(
                f"n_components={K} exceeds the number of distinct samples with "
                f"positive weight ({c})"
            )
        cand = np.searchsorted(
            np.cumsum(ww * closest), rng.uniform(size=n_trials) * potential
        )
        np.clip(cand, None, m - 1, out=cand)
        dist = np.minimum(closest[:, None], _sq_dist(Z, sq, Z[cand].toarray()))
        best = int(np.argmin(ww @ dist))
        idx.append(int(cand[best]))
        closest = dist[:, best]
    return np.asarray(idx)


def _sparse_kmeans(Z, w, K, rng, max_iter=30):
    """Lloyd's k-means on sparse rows from k-means++ seeds; returns labels."""
    m = Z.shape[0]
    ww = w if w.shape[0] else np.ones(m)
    sq = np.asarray(Z.multiply(Z).sum(axis=1)).ravel()
    C = Z[_sparse_kmeans_plusplus(Z, w, K, rng)].toarray()
    labels = np.argmin(_sq_dist(Z, sq, C), axis=1)
    for _ in range(max_iter):
        onehot = sparse.csr_matrix((ww, (labels, np.arange(m))), shape=(K, m))
        counts = np.bincount(labels, weights=ww, minlength=K)
        sums = np.asarray((onehot @ Z).toarray())
        filled = counts > 0
        C = C.copy()
        C[filled] = sums[filled] / counts[filled, None]
        new = np.argmin(_sq_dist(Z, sq, C), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _random_resp_sums(source, K, rng, chunk=1 << 16):
    """Sums under uniform random responsibilities normalised per row
    (scikit-learn's ``'random'``)."""
    D = source.n_features
    nk, sum_x = np.zeros(K), np.zeros((K, D))
    for X, w in source.chunks():
        for r0 in range(0, X.shape[0], chunk):
            part = X[r0 : r0 + chunk]
            resp = rng.uniform(size=(part.shape[0], K))
            resp /= resp.sum(axis=1, keepdims=True)
            if w.shape[0]:
                resp *= w[r0 : r0 + chunk, None]
            nk += resp.sum(axis=0)
            if sparse.issparse(part):
                sum_x += np.asarray(part.T @ resp).T
            else:
                sum_x += resp.T @ np.asarray(part, dtype=np.float64)
    return nk, sum_x


def point_means(kind: str, rows: np.ndarray, smoothing: float) -> np.ndarray:
    """Parameters of components each fitted to one row (smoothed)."""
    return means_from_sums(kind, np.ones(rows.shape[0]), rows, smoothing)
