"""``fastem.StudentTMixture``: a mixture of multivariate t distributions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._estimator import MixtureEstimator, check_weights_init
from ._validation import check_option, check_param_array, check_real
from .families import student as st


class StudentTMixture(MixtureEstimator):
    """Mixture of multivariate Student-t distributions fitted by EM.

    A robust alternative to :class:`fastem.GaussianMixture`: each component
    has a location ``means_[k]``, a full scale matrix ``covariances_[k]`` and
    degrees of freedom ``dofs_[k]``; small degrees of freedom give heavy
    tails, so outliers pull the locations and scales much less.  The
    degrees of freedom are either fixed (``dof``) or estimated per component
    with the ECME update of Liu & Rubin (1995) in the form Peel & McLachlan
    (2000) give for mixtures, or with the one-pass ECM update (see
    :mod:`fastem.families.student`).  Each EM iteration is one fused pass
    over the data (plus, for ``'ecme'``, a cheaper pass without scatter
    matrices) and allocates no ``(n_samples, n_components)`` array.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    dof : float or None, default=None
        Fixed degrees of freedom (> 0) of every component; None estimates
        them per component, within ``[0.01, 1e4]``.
    dof_update : {'ecme', 'ecm'}, default='ecme'
        How estimated degrees of freedom are updated: ``'ecme'`` solves Peel
        & McLachlan's equation with the latent weights recomputed at the
        updated locations and scales (an extra pass per iteration; fewer
        iterations), ``'ecm'`` with those of the iteration's E-step (the
        exact EM step; one pass).
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonals of the scale
        matrices.
    max_iter : int, default=100
        EM iterations per initialisation (0 keeps the initial parameters).
    n_init : int, default=1
        Initialisations; the best final lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        Initial responsibilities, as for :class:`fastem.GaussianMixture`; the
        initial scale matrices are the resulting covariances.
    weights_init : array-like of shape (n_components,), optional
        User-given initial weights.
    means_init : array-like of shape (n_components, n_features), optional
        User-given initial locations.
    precisions_init : array-like of shape (n_components, n_features, n_features), optional
        User-given initial inverse scale matrices.
    dofs_init : float or array-like of shape (n_components,), optional
        Initial degrees of freedom when they are estimated (default 10).
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
        too.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
        Locations.
    covariances_ : ndarray of shape (n_components, n_features, n_features)
        Scale matrices ``Sigma_k``; the covariance of component ``k`` is
        ``dofs_[k] / (dofs_[k] - 2) * covariances_[k]`` when ``dofs_[k] > 2``.
    precisions_, precisions_cholesky_ : ndarray of shape (n_components, n_features, n_features)
        Inverses of the scale matrices and their upper-triangular Cholesky
        factors (as in scikit-learn's ``GaussianMixture``).
    dofs_ : ndarray of shape (n_components,)
        Degrees of freedom.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean (weighted) log-likelihood at the start of the last iteration of
        the best run.
    lower_bounds_ : list of float
        Lower bound of every iteration of the best run.
    n_features_in_ : int

    References
    ----------
    C. Liu and D. B. Rubin (1995). ML estimation of the t distribution using
    EM and its extensions, ECM and ECME. Statistica Sinica 5, 19-39.

    D. Peel and G. J. McLachlan (2000). Robust mixture modelling using the t
    distribution. Statistics and Computing 10, 339-348.
    """

    _fitted_arrays = (
        "weights_",
        "means_",
        "covariances_",
        "precisions_cholesky_",
        "dofs_",
    )

    def __init__(
        self,
        n_components: int = 1,
        *,
        dof: float | None = None,
        dof_update: str = "ecme",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        dofs_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        n_threads: int | None = None,
        callback: Callable[[int, float], Any] | None = None,
        chunk_rows: int | None = None,
    ):
        self.n_components = n_components
        self.dof = dof
        self.dof_update = dof_update
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.dofs_init = dofs_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_threads = n_threads
        self.callback = callback
        self.chunk_rows = chunk_rows

    # ------------------------------------------------------------ hooks

    def _validate_family_hyperparameters(self) -> None:
        check_real(self.reg_covar, "reg_covar")
        check_option(self.dof_update, "dof_update", st.DOF_UPDATES)
        if self.dof is not None:
            check_real(self.dof, "dof")
            if not self.dof > 0:
                raise ValueError(f"dof must be > 0 or None, got {self.dof}")

    def _make_family(self):
        dof = None if self.dof is None else float(self.dof)
        return st.StudentEM(self.reg_covar, dof, self.dof_update, self.n_threads)

    def _validated_inits(self, n_features: int) -> dict[str, Any]:
        K, D = self.n_components, n_features
        out: dict[str, Any] = {
            "weights_init": None,
            "means_init": None,
            "precisions_init": None,
        }
        if self.weights_init is not None:
            out["weights_init"] = check_weights_init(self.weights_init, K)
        if self.means_init is not None:
            out["means_init"] = check_param_array(self.means_init, "means_init", (K, D))
        if self.precisions_init is not None:
            p = check_param_array(self.precisions_init, "precisions_init", (K, D, D))
            for m in p:
                if not np.allclose(m, m.T) or not (np.linalg.eigvalsh(m) > 0).all():
                    raise ValueError(
                        "precisions_init must hold symmetric positive-definite matrices"
                    )
            out["precisions_init"] = p
        if self.dof is not None:
            out["dofs"] = np.full(K, float(self.dof))
        elif self.dofs_init is not None:
            shape = () if np.ndim(self.dofs_init) == 0 else (K,)
            v = np.broadcast_to(
                check_param_array(self.dofs_init, "dofs_init", shape), (K,)
            )
            if not (v > 0).all():
                raise ValueError(f"dofs_init must be > 0, got min {v.min()!r}")
            out["dofs"] = np.array(v, dtype=np.float64)
        else:
            out["dofs"] = np.full(K, st.DEFAULT_DOF)
        return out

    def _initial_params(self, source, rng, inits):
        inits = dict(inits)
        dofs = inits.pop("dofs")
        return st.initial_params(
            source,
            self.n_components,
            self.reg_covar,
            self.init_params,
            rng,
            dofs,
            n_threads=self.n_threads,
            **inits,
        )

    def _set_params_from(self, params: st.StudentParams) -> None:
        self._check_finite(
            weights=params.weights,
            means=params.means,
            covariances=params.covariances,
            precisions_cholesky=params.precisions_cholesky,
            dofs=params.dofs,
        )
        self._params = params
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.precisions()
        self.dofs_ = params.dofs

    def _restore_fitted(self, arrays) -> None:
        self._set_params_from(
            st.StudentParams(
                *(
                    np.asarray(arrays[name], dtype=np.float64)
                    for name in self._fitted_arrays
                )
            )
        )

    def _per_row_function(self):
        return st.per_row

    def _n_parameters(self) -> int:
        return st.n_parameters(
            self.n_components, self.means_.shape[1], estimate_dof=self.dof is None
        )

    def _sample(self, n_samples, rng):
        return st.sample(self._params, n_samples, rng)
