"""``fastem.MixtureImputer``: impute missing values from a Gaussian mixture.

A scikit-learn transformer (``fit``, ``transform``, ``fit_transform``; usable
in a ``Pipeline`` before a model) that does not import scikit-learn.
"""

from __future__ import annotations

import numpy as np

from ._base import EstimatorBase
from ._validation import check_data, check_random_state, check_sample_weight
from .exceptions import NotFittedError
from .mixture import GaussianMixture


class MixtureImputer(EstimatorBase):
    """Fill missing values (NaN) with their conditional mean under a Gaussian
    mixture fitted by EM on the observed values.

    ``fit`` runs :class:`fastem.GaussianMixture` with missing values (exact
    EM for data missing at random: each row contributes the marginal
    likelihood of its observed values).  ``transform`` replaces every NaN of a
    row by ``sum_k p(k | x_obs) E[x_mis | x_obs, k]``, the conditional means
    of the components mixed by their posterior given the observed values (or,
    with ``sample_posterior=True``, by one draw from ``p(x_mis | x_obs)``).
    Unlike a per-feature regression imputer, the imputation follows the
    clusters of the data, and with ``n_components=1`` it is the classic
    multivariate-normal EM imputation.

    Parameters
    ----------
    n_components : int, default=3
        Mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        Covariance parametrisation; only ``full`` and ``tied`` use the
        correlations between features (with ``diag``/``spherical`` a missing
        value is predicted from the posterior of the components alone).
    tol, reg_covar, max_iter, n_init, init_params, n_threads
        As in :class:`fastem.GaussianMixture`.
    sample_posterior : bool, default=False
        If True, ``transform`` draws the missing values from their posterior
        predictive distribution instead of using its mean (for multiple
        imputation: transform several times).
    random_state : int, RandomState or None, default=None
        Seed of the mixture's initialisation and of the posterior draws.

    Attributes
    ----------
    mixture_ : GaussianMixture
        The fitted mixture.
    n_iter_ : int
        EM iterations of the best run.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names of ``X`` when it has string column names (a DataFrame).

    Notes
    -----
    Rows of the training data with every value missing carry no information
    about the mixture and are left out of ``fit``; ``transform`` fills such
    rows with the mixture mean (a draw from the mixture with
    ``sample_posterior``).  A feature never observed in the training data is
    an error.
    """

    def __init__(
        self,
        n_components: int = 3,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        sample_posterior: bool = False,
        random_state=None,
        n_threads: int | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.sample_posterior = sample_posterior
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X, y=None, sample_weight=None) -> MixtureImputer:
        """Fit the mixture on the observed values of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with NaN marking missing values.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative frequency weights of the rows.

        Returns
        -------
        self : MixtureImputer
        """
        if not isinstance(self.sample_posterior, (bool, np.bool_)):
            raise TypeError(
                f"sample_posterior must be a bool, got {self.sample_posterior!r}"
            )
        names = _feature_names(X)
        X = check_data(X, "X", allow_nan=True, allow_all_nan_rows=True)
        sw = check_sample_weight(sample_weight, X.shape[0])
        rng = check_random_state(self.random_state)
        keep = ~np.isnan(X).all(axis=1)
        if not keep.any():
            raise ValueError("X has no observed value; nothing to fit")
        if not keep.all():
            X = X[keep]
            sw = sw[keep] if sw.shape[0] else sw
        mixture = GaussianMixture(
            self.n_components,
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=rng,
            n_threads=self.n_threads,
        )
        mixture.fit(X, sample_weight=sw if sw.shape[0] else None)
        self.mixture_ = mixture
        self.n_iter_ = mixture.n_iter_
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._rng = rng
        return self

    def transform(self, X) -> np.ndarray:
        """Impute the missing values of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with NaN marking missing values.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A new array (float32 input stays float32) without NaN; observed
            values are copied unchanged.
        """
        self._check_is_fitted()
        X = check_data(X, "X", allow_nan=True, allow_all_nan_rows=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but MixtureImputer is expecting "
                f"{self.n_features_in_} features as input"
            )
        if self.sample_posterior:
            return self.mixture_.sample_missing(X, 1, random_state=self._rng)[0]
        return self.mixture_.impute(X)

    def fit_transform(self, X, y=None, sample_weight=None) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X, y, sample_weight=sample_weight).transform(X)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output feature names: the input ones (imputation keeps columns).

        Parameters
        ----------
        input_features : array-like of str, optional
            Defaults to ``feature_names_in_`` or ``x0, x1, ...``.

        Returns
        -------
        names : ndarray of str
        """
        self._check_is_fitted()
        if input_features is None:
            if hasattr(self, "feature_names_in_"):
                return self.feature_names_in_.copy()
            return np.array([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        names = np.asarray(input_features, dtype=object)
        if names.shape != (self.n_features_in_,):
            raise ValueError(
                f"input_features should have length {self.n_features_in_}, "
                f"got {names.shape}"
            )
        return names

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "mixture_"):
            raise NotFittedError(
                "This MixtureImputer instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator."
            )

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
            input_tags=InputTags(allow_nan=True),
        )


def _feature_names(X) -> np.ndarray | None:
    """String column names of a DataFrame-like ``X``, else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(list(columns), dtype=object)
    if names.size and all(isinstance(n, str) for n in names):
        return names
    return None
