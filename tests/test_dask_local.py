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
