"""Default fits reach scikit-learn's optimum on the data users bring (issue: lr="auto").

Raw and standardised features, C from 1e-10 to 1e4, binary and multinomial,
float64 and float32, dense and sparse: the objective ends within 1e-5 (float32:
1e-4) of the optimum, and no ConvergenceWarning is raised. The optimum is the
best objective scikit-learn's exact solvers reach with tol=1e-12. The full
sweep is marked ``slow``; a corner of it runs by default.
"""

import functools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression

from .conftest import objective_value

LOADERS = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "iris": load_iris,
    "digits": load_digits,
}
CS = [*np.logspace(-4, 4, 10), 1e-10]


@functools.cache
def _data(name, scaling):
    X, y = LOADERS[name](return_X_y=True)
    if scaling == "standardised":
        X = StandardScaler().fit_transform(X)
    return X, y


@functools.cache
def _optimum(name, scaling, C):
    X, y = _data(name, scaling)
    best = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver in ("newton-cholesky", "lbfgs"):
            ref = LogisticRegression(C=C, solver=solver, tol=1e-12, max_iter=10_000).fit(X, y)
            best = min(best, objective_value(ref.coef_, ref.intercept_, X, y, C=C))
    return best


def _check(name, scaling, C, dtype, sparse):
    X, y = _data(name, scaling)
    Xf = X.astype(dtype)
    if sparse:
        Xf = sp.csr_matrix(Xf)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=C).fit(Xf, y)
    assert est.coef_.dtype == np.dtype(dtype)  # float32 stays float32, as scikit-learn
    gap = objective_value(est.coef_, est.intercept_, X, y, C=C) - _optimum(name, scaling, C)
    assert gap <= (1e-4 if dtype == "float32" else 1e-5)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("C", [1e-10, 1.0, 1e4])
@pytest.mark.parametrize("name", ["breast_cancer", "iris"])
def test_default_fit_reaches_the_optimum_on_raw_data(name, C, dtype, sparse):
    _check(name, "raw", C, dtype, sparse)


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("C", CS, ids=lambda c: f"C={c:.3g}")
@pytest.mark.parametrize("scaling", ["raw", "standardised"])
@pytest.mark.parametrize("name", list(LOADERS))
def test_default_fit_reaches_the_optimum_everywhere(name, scaling, C, dtype, sparse):
    _check(name, scaling, C, dtype, sparse)


@pytest.mark.parametrize("name", list(LOADERS))
def test_loss_curve_never_rises_with_auto_lr(name):
    X, y = _data(name, "raw")
    est = TorchLogisticRegression(C=1e4).fit(X, y)
    curve = np.asarray(est.loss_curve_)
    assert (np.diff(curve) <= 1e-12 * np.abs(curve[:-1])).all()
