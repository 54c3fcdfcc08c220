"""fit on dask arrays with dask's local scheduler (no distributed.Client)."""

import numpy as np
import pytest

from sktorch_lr import TorchLogisticRegression

pytestmark = pytest.mark.slow

da = pytest.importorskip("dask.array")


def test_dask_fit_without_a_client_matches_memory():
    import dask

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 4)) * [1, 5, 50, 0.5]
    y = (X[:, 0] + X[:, 1] / 5 + rng.normal(size=4000) > 0).astype(int)
    # The same optimum (at default tol the in-memory fit's line search takes another path).
    with dask.config.set(scheduler="threads"):
        est = TorchLogisticRegression(tol=1e-10).fit(da.from_array(X, chunks=(1000, 4)), y)
    ref = TorchLogisticRegression(tol=1e-10).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "what, match",
    [
        ("nan", "NaN or infinity"),
        ("inf", "NaN or infinity"),
        ("huge", "as large as 1e\\+300"),
        ("negative weight", "non-negative"),
        ("nan weight", "non-negative"),
        ("continuous y", "Unknown label type"),
    ],
)
def test_dask_fit_checks_values_as_memory_does(what, match):
    """Values an in-memory fit refuses are refused on dask arrays too (from the one pass
    that takes the means), not left to surface as a diverged or non-converged fit; a
    model fitted before is left as it was."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(int)
    sw = np.ones(300)
    if what in ("nan", "inf", "huge"):
        X[123, 2] = {"nan": np.nan, "inf": -np.inf, "huge": 1e300}[what]
    elif what == "negative weight":
        sw[7] = -1.0
    elif what == "nan weight":
        sw[7] = np.nan
    else:
        y = X[:, 1].copy()
    est = TorchLogisticRegression().fit(rng.normal(size=(50, 3)), rng.integers(0, 2, 50))
    before = est.coef_.copy()
    with pytest.raises(ValueError, match=match):
        est.fit(
            da.from_array(X, chunks=(100, 3)),
            da.from_array(y, chunks=100),
            sample_weight=da.from_array(sw, chunks=100),
        )
    np.testing.assert_array_equal(est.coef_, before)


def test_dask_fit_finds_constant_columns_in_the_means_pass():
    """An unpenalised dask fit with a constant column: its coefficient stays at zero and
    the fit equals the in-memory one (the column's extremes come with the means)."""
    import dask

    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(size=2000), np.full(2000, 0.1), rng.normal(size=2000) * 1e4])
    y = (X[:, 0] + X[:, 2] / 1e4 + rng.normal(size=2000) > 0).astype(int)
    with dask.config.set(scheduler="threads"):
        est = TorchLogisticRegression(C=np.inf, tol=1e-10).fit(da.from_array(X, chunks=(500, 3)), y)
    ref = TorchLogisticRegression(C=np.inf, tol=1e-10).fit(X, y)
    assert est.coef_[0, 1] == 0 and ref.coef_[0, 1] == 0
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-6, atol=1e-9)


def test_float32_dask_fit_goes_on_in_float64_sums_as_memory_does():
    """A float32 fit whose float32 partition sums stall above tol (six classes, columns
    up to 500 from zero, 60 chunks, C=1e4) goes on with float64 sums, as an in-memory
    fit does, and reaches the optimum without a warning (it used to stop at the first
    stall, 1e-6 above the optimum, and warn)."""
    import warnings

    import dask
    from sklearn.exceptions import ConvergenceWarning

    from .conftest import objective_value

    rng = np.random.default_rng(4)
    Z = rng.normal(size=(3000, 12))
    y = (Z @ rng.normal(size=(12, 6)) + rng.gumbel(size=(3000, 6))).argmax(1)
    X = (Z + 5 * rng.normal(size=12)) * 10.0 ** rng.uniform(-2, 2, 12)
    kw = dict(C=1e4, l1_ratio=0.5)
    with dask.config.set(scheduler="threads"), warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(**kw).fit(
            da.from_array(X.astype(np.float32), chunks=(50, 12)), da.from_array(y, chunks=50)
        )
    assert est.coef_.dtype == np.float32
    ref = TorchLogisticRegression(**kw, tol=1e-9, max_iter=5000).fit(X, y)
    gap = objective_value(est.coef_, est.intercept_, X, y, **kw) - objective_value(
        ref.coef_, ref.intercept_, X, y, **kw
    )
    assert gap < 1e-9


def test_dask_fit_refuses_sparse_chunks_clearly():
    import scipy.sparse as sp

    X = da.from_array(np.random.default_rng(0).normal(size=(100, 3)), chunks=(25, 3))
    y = np.arange(100) % 2
    with pytest.raises(TypeError, match="numpy chunks; this one's chunks are scipy.sparse"):
        TorchLogisticRegression().fit(X.map_blocks(sp.csr_matrix), y)
    # Predicting block by block takes them (each block is a scipy.sparse matrix).
    est = TorchLogisticRegression().fit(X.compute(), y)
    np.testing.assert_array_equal(
        est.predict(X.map_blocks(sp.csr_matrix)).compute(), est.predict(X.compute())
    )


def test_dask_balanced_weights_are_the_in_memory_ones_with_a_class_without_weight():
    from sktorch_lr._base import _effective_weights
    from sktorch_lr._estimator import _dask_class_weight

    y = np.repeat([0, 1, 2], [30, 50, 20])
    sw = np.where(y == 2, 0.0, np.linspace(0.5, 2.0, len(y)))
    classes = np.array([0, 1, 2])
    per_sample = _effective_weights("balanced", classes, y, y, sw)
    assert (per_sample[y == 2] == 0).all()
    in_memory = [per_sample[y == k][0] / sw[y == k][0] for k in (0, 1)] + [0.0]
    on_dask = _dask_class_weight(
        "balanced", classes, da.from_array(y, chunks=40), da.from_array(sw, chunks=40)
    )
    np.testing.assert_allclose(on_dask, in_memory, rtol=1e-12)
