"""Out-of-core and distributed, on a real distributed.LocalCluster (loopback only)."""

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression

# Ecosystem tests (a LocalCluster of worker processes): run by .ci/run with -m slow.
pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_incremental_streams_blocks_through_partial_fit(client, breast_cancer):
    X, y = breast_cancer
    Xd = da.from_array(X, chunks=(100, X.shape[1]))
    yd = da.from_array(y, chunks=100)
    assert Xd.numblocks[0] == 6  # larger than one block
    inc = dask_ml_wrappers.Incremental(
        TorchLogisticRegression(random_state=0), scoring="accuracy", shuffle_blocks=False
    )
    for _ in range(10):
        inc.partial_fit(Xd, yd, classes=[0, 1])
    model = inc.estimator_
    assert model.n_iter_ == 10 * 6  # one epoch per block per pass
    assert inc.score(Xd, yd) > 0.95
    # the same stream in-process gives the same model
    ref = TorchLogisticRegression(random_state=0)
    for _ in range(10):
        for start in range(0, len(y), 100):
            ref.partial_fit(X[start : start + 100], y[start : start + 100], classes=[0, 1])
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-10, atol=1e-12)


def test_grid_search_fans_out_through_joblibs_dask_backend(client, breast_cancer):
    X, y = breast_cancer
    pipe = make_pipeline(StandardScaler(), TorchLogisticRegression())
    grid = {"torchlogisticregression__C": [0.01, 0.1, 1.0, 10.0]}
    with joblib.parallel_backend("dask"):
        search = GridSearchCV(pipe, grid, cv=3, n_jobs=-1).fit(X, y)
    local = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    # the fits ran on the cluster's two worker processes
    assert len(client.scheduler_info()["workers"]) == 2
