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


# --------------------------------------------- exact fits on dask collections


def _weighted_problem(n=3000, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)) * [1, 10, 100, 1, 0.1] + [3, 0, -50, 1, 0]
    score = X[:, 0] + X[:, 1] / 10 + rng.normal(size=n)
    y = (score > 3).astype(int) if n_classes == 2 else np.digitize(score, [2.5, 3.5])
    return X, y, rng.uniform(0.5, 2.0, n)


@pytest.fixture
def no_whole_X_on_the_client(monkeypatch):
    """Fail if any dask computation brings a result with all of X's rows to the client."""
    import dask
    import dask.base

    seen = []
    real = dask.base.compute

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        for value in out:
            arrays = value if isinstance(value, tuple) else (value,)
            for a in arrays:
                if isinstance(a, np.ndarray) and a.ndim == 2:
                    seen.append(a.shape)
        return out

    monkeypatch.setattr(dask.base, "compute", recording)
    monkeypatch.setattr(dask, "compute", recording)
    return seen


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dask_fit_reaches_the_in_memory_optimum(client, n_classes, dtype, no_whole_X_on_the_client):
    from .conftest import objective_value

    # More rows than the curvature sample (16,384): the client may hold that sample only.
    X, y, sw = _weighted_problem(n=20_000, n_classes=n_classes)
    X = X.astype(dtype)
    Xd = da.from_array(X, chunks=(7000, 5))  # uneven last block
    yd = da.from_array(y, chunks=7000)
    swd = da.from_array(sw, chunks=7000)
    est = TorchLogisticRegression(class_weight="balanced").fit(Xd, yd, sample_weight=swd)
    assert all(shape[0] < len(X) for shape in no_whole_X_on_the_client)
    ref = TorchLogisticRegression(class_weight="balanced").fit(X, y, sample_weight=sw)
    # The objective in float64 with the weights the fit used (balanced counts weights).
    cw = {c: w for c, w in zip(ref.classes_, _balanced(y, sw), strict=True)}
    s = sw * np.array([cw[v] for v in y])
    j_dask = objective_value(est.coef_, est.intercept_, X, y, sample_weight=s)
    j_mem = objective_value(ref.coef_, ref.intercept_, X, y, sample_weight=s)
    assert abs(j_dask - j_mem) <= (1e-6 if dtype == np.float64 else 1e-5)
    assert est.n_features_in_ == 5 and list(est.classes_) == list(ref.classes_)


def _balanced(y, sw):
    classes = np.unique(y)
    counts = np.array([sw[y == c].sum() for c in classes])
    return sw.sum() / (len(classes) * counts)


def test_dask_predictions_are_lazy_and_blockwise(client):
    X, y, _ = _weighted_problem(n_classes=3)
    Xd = da.from_array(X, chunks=(1000, 5))
    est = TorchLogisticRegression().fit(Xd, da.from_array(y, chunks=1000))
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        lazy = getattr(est, method)(Xd)
        assert isinstance(lazy, da.Array) and lazy.numblocks[0] == 3
        np.testing.assert_allclose(lazy.compute(), getattr(est, method)(X))
    score = est.score(Xd, da.from_array(y, chunks=1000))
    assert isinstance(score, da.Array)
    assert float(score.compute()) == pytest.approx(est.score(X, y))


def test_dask_dataframe_input_keeps_feature_names(client):
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    X, y, _ = _weighted_problem()
    frame = pd.DataFrame(X, columns=list("abcde"))
    est = TorchLogisticRegression(tol=1e-10).fit(
        dd.from_pandas(frame, npartitions=3), dd.from_pandas(pd.Series(y), npartitions=3)
    )
    assert list(est.feature_names_in_) == list("abcde")
    ref = TorchLogisticRegression(tol=1e-10).fit(frame, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-6, atol=1e-9)


def test_dask_mini_batches_are_refused_with_a_reason(client):
    X, y, _ = _weighted_problem()
    with pytest.raises(ValueError, match="Incremental"):
        TorchLogisticRegression(batch_size=256).fit(da.from_array(X, chunks=1000), y)
