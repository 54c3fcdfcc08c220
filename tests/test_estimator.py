"""TorchLogisticRegression against sklearn's LogisticRegression, the lesson, and bad input."""

import copy
import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sktorch_lr import DivergenceError, TorchLogisticRegression

from .conftest import objective_value


def _rel_max_diff(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def _sklearn_optimum(X, y, **kw):
    """sklearn's optimum, by Newton-Cholesky (lbfgs needs minutes on raw digits to get there)."""
    return LogisticRegression(solver="newton-cholesky", tol=1e-10, max_iter=1000, **kw).fit(X, y)


# --------------------------------------------------------- agreement with sklearn


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris_raw", "digits_standardised"])
def test_tight_fit_matches_sklearn_coefficients(dataset, breast_cancer, digits):
    """Small tol and large max_iter: coef_ agrees with lbfgs to 1e-3 of its largest entry."""
    if dataset == "breast_cancer":
        X, y = breast_cancer
    elif dataset == "iris_raw":
        X, y = load_iris(return_X_y=True)
    else:
        X, y = StandardScaler().fit_transform(digits[0]), digits[1]
    sk = _sklearn_optimum(X, y)
    ours = TorchLogisticRegression(tol=1e-7, max_iter=20_000).fit(X, y)
    assert ours.coef_.shape == sk.coef_.shape
    assert _rel_max_diff(ours.coef_, sk.coef_) < 1e-3
    assert _rel_max_diff(ours.intercept_, sk.intercept_) < 1e-3 or np.allclose(
        ours.intercept_, sk.intercept_, atol=1e-3
    )


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris", "digits"])
def test_default_fit_reaches_sklearn_objective(dataset, request):
    """Defaults reach within 1e-3 of the optimal objective (iris and digits raw)."""
    X, y = request.getfixturevalue(dataset)
    sk = _sklearn_optimum(X, y)
    ours = TorchLogisticRegression().fit(X, y)
    gap = objective_value(ours.coef_, ours.intercept_, X, y) - objective_value(
        sk.coef_, sk.intercept_, X, y
    )
    assert -1e-9 < gap < 1e-3
    assert ours.loss_curve_[-1] == pytest.approx(
        objective_value(ours.coef_, ours.intercept_, X, y), rel=1e-6
    )


def test_l1_matches_saga_and_gives_exact_zeros(breast_cancer):
    X, y = breast_cancer
    C = 0.05
    saga = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", tol=1e-8, max_iter=100_000)
    saga.fit(X, y)
    ours = TorchLogisticRegression(C=C, l1_ratio=1.0, tol=1e-7, max_iter=20_000).fit(X, y)
    j_saga = objective_value(saga.coef_, saga.intercept_, X, y, C=C, l1_ratio=1.0)
    j_ours = objective_value(ours.coef_, ours.intercept_, X, y, C=C, l1_ratio=1.0)
    assert j_ours == pytest.approx(j_saga, abs=1e-6)
    zeros_saga = np.abs(saga.coef_) < 1e-6
    assert zeros_saga.sum() > 10  # the penalty really wants sparsity here
    np.testing.assert_array_equal(ours.coef_ == 0.0, zeros_saga)


def test_elastic_net_matches_saga(breast_cancer):
    X, y = breast_cancer
    kw = dict(C=0.1, l1_ratio=0.5)
    saga = LogisticRegression(solver="saga", tol=1e-8, max_iter=100_000, **kw).fit(X, y)
    ours = TorchLogisticRegression(tol=1e-7, max_iter=20_000, **kw).fit(X, y)
    assert objective_value(ours.coef_, ours.intercept_, X, y, **kw) == pytest.approx(
        objective_value(saga.coef_, saga.intercept_, X, y, **kw), abs=1e-6
    )


def test_no_penalty_with_C_inf(breast_cancer):
    X, y = breast_cancer
    X, y = X[:, :3], y  # not separable: a finite optimum
    sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(X, y)
    ours = TorchLogisticRegression(C=np.inf, tol=1e-7, max_iter=20_000).fit(X, y)
    assert _rel_max_diff(ours.coef_, sk.coef_) < 1e-3


def test_sample_weight_and_class_weight_match_sklearn(breast_cancer):
    X, y = breast_cancer
    rng = np.random.RandomState(0)
    sw = rng.uniform(0.1, 3.0, size=len(y))
    kw = dict(class_weight={0: 2.0, 1: 0.5})
    sk = LogisticRegression(tol=1e-10, max_iter=10_000, **kw).fit(X, y, sample_weight=sw)
    ours = TorchLogisticRegression(tol=1e-7, max_iter=20_000, **kw).fit(X, y, sample_weight=sw)
    assert _rel_max_diff(ours.coef_, sk.coef_) < 1e-3


def test_integer_sample_weights_equal_repeated_rows(iris):
    X, y = iris
    w = np.random.RandomState(0).randint(0, 3, size=len(y))
    a = TorchLogisticRegression(tol=1e-8, max_iter=5000).fit(X, y, sample_weight=w)
    b = TorchLogisticRegression(tol=1e-8, max_iter=5000).fit(np.repeat(X, w, 0), np.repeat(y, w))
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the lesson


def test_lesson_data_defaults(lesson_data):
    X, y = lesson_data
    est = TorchLogisticRegression().fit(X, y)
    assert est.score(X, y) >= 0.99
    assert est.n_iter_ < 100


def test_lesson_settings(lesson_data):
    """lr=0.01, momentum=0.9, no penalty, full batch: the lesson's own training."""
    X, y = lesson_data
    est = TorchLogisticRegression(lr=0.01, momentum=0.9, C=np.inf, batch_size=None, tol=1e-3)
    est.fit(X, y)
    assert est.score(X, y) >= 0.99
    assert est.lr_ == 0.01 and est.momentum_ == 0.9


def test_lesson_model_is_linear_plus_sigmoid(lesson_data):
    X, y = lesson_data
    est = TorchLogisticRegression().fit(X, y)
    lin = est.module_.linear
    assert isinstance(lin, torch.nn.Linear) and lin.weight.shape == (1, 2)
    Xt = torch.from_numpy(X)
    with torch.no_grad():
        expected = torch.sigmoid(lin(Xt))
        np.testing.assert_allclose(est.module_(Xt).numpy(), expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(est.predict_proba(X)[:, 1], expected[:, 0].numpy(), rtol=1e-5)


# --------------------------------------------------------------------- inputs


def test_float32_trains_in_float32_and_float64_in_float64(breast_cancer):
    X, y = breast_cancer
    e32 = TorchLogisticRegression(tol=1e-6, max_iter=5000).fit(X.astype(np.float32), y)
    e64 = TorchLogisticRegression(tol=1e-6, max_iter=5000).fit(X, y)
    assert e32.module_.linear.weight.dtype == torch.float32
    assert e64.module_.linear.weight.dtype == torch.float64
    assert e32.coef_.dtype == np.float32  # as scikit-learn keeps float32 coefficients
    np.testing.assert_allclose(e32.coef_, e64.coef_, rtol=1e-3, atol=1e-4)


def test_dataframe_feature_names(breast_cancer):
    pd = pytest.importorskip("pandas")
    X, y = breast_cancer
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = TorchLogisticRegression().fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, df.columns)
    np.testing.assert_array_equal(est.predict(df), est.predict(X))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_trains_sparse_and_matches_dense(fmt, breast_cancer):
    X, y = breast_cancer
    X = np.where(np.abs(X) < 0.5, 0.0, X)  # make it really sparse
    Xs = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix}[fmt](X)
    dense = TorchLogisticRegression(tol=1e-6, max_iter=5000).fit(X, y)
    sparse = TorchLogisticRegression(tol=1e-6, max_iter=5000).fit(Xs, y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), atol=1e-6)


def test_sparse_minibatches(breast_cancer):
    X, y = breast_cancer
    Xs = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X))
    est = TorchLogisticRegression(batch_size=64, random_state=0).fit(Xs, y)
    assert est.score(Xs, y) > 0.95


def test_torch_tensor_input_used_in_place(breast_cancer):
    X, y = breast_cancer
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    est = TorchLogisticRegression().fit(Xt, yt)
    ref = TorchLogisticRegression().fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_)
    proba = est.predict_proba(Xt)
    assert isinstance(proba, torch.Tensor) and proba.shape == (len(y), 2)
    pred = est.predict(Xt)
    assert isinstance(pred, torch.Tensor)
    assert isinstance(est.predict(X), np.ndarray)
    assert est.score(Xt, yt) == pytest.approx(ref.score(X, y))
    with pytest.raises(ValueError, match="features"):
        est.predict(Xt[:, :5])


@pytest.mark.parametrize("labels", [np.array(["cat", "dog"]), np.array([-1, 1]), np.array([2, 5])])
def test_any_binary_labels(labels, lesson_data):
    X, y = lesson_data
    y_lab = labels[y.astype(int)]
    est = TorchLogisticRegression().fit(X, y_lab)
    np.testing.assert_array_equal(est.classes_, np.sort(labels))
    assert est.score(X, y_lab) >= 0.99
    assert est.predict(X).dtype == y_lab.dtype


def test_multiclass_shapes_and_probabilities(iris):
    X, y = iris
    est = TorchLogisticRegression().fit(X, y)
    assert est.coef_.shape == (3, 4) and est.intercept_.shape == (3,)
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), proba, rtol=1e-10)
    np.testing.assert_array_equal(est.predict(X), est.classes_[proba.argmax(1)])
    assert est.decision_function(X).shape == (150, 3)


def test_fit_intercept_false(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression(fit_intercept=False, tol=1e-7, max_iter=5000).fit(X, y)
    sk = LogisticRegression(fit_intercept=False, tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_array_equal(est.intercept_, [0.0])
    assert est.module_.linear.bias is None
    assert _rel_max_diff(est.coef_, sk.coef_) < 1e-3


# -------------------------------------------------------- training behaviour


def test_loss_curve_and_n_iter(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression().fit(X, y)
    assert len(est.loss_curve_) == est.n_iter_ >= 1
    assert est.loss_curve_[-1] < est.loss_curve_[0]


def test_convergence_warning_when_max_iter_ends_the_fit(breast_cancer):
    X, y = breast_cancer
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        est = TorchLogisticRegression(max_iter=3).fit(X, y)
    assert est.n_iter_ == 3


def test_no_warning_when_converged(breast_cancer):
    X, y = breast_cancer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TorchLogisticRegression().fit(X, y)


def test_minibatch_reaches_the_optimum(breast_cancer):
    X, y = breast_cancer
    sk = _sklearn_optimum(X, y)
    est = TorchLogisticRegression(batch_size=32, random_state=0).fit(X, y)
    gap = objective_value(est.coef_, est.intercept_, X, y) - objective_value(
        sk.coef_, sk.intercept_, X, y
    )
    assert gap < 1e-3


@pytest.mark.parametrize("dataset", ["wine", "digits"])
@pytest.mark.parametrize("batch_size", [16, 64])
def test_minibatches_that_creep_grow_to_the_full_batch(dataset, batch_size, digits):
    """At C=100 the metric measured at the start is far too curved by the end: epochs of
    mini-batches set a new best every time but crept (wine, batches of 64: 1,000
    epochs short of tol). BatchGrowth counts creeping epochs as stalls."""
    from sklearn.datasets import load_wine

    if dataset == "wine":
        X, y = load_wine(return_X_y=True)
        X = StandardScaler().fit_transform(X)
    else:
        X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=100.0, batch_size=batch_size, random_state=0).fit(X, y)
    assert est.n_iter_ < 300
    sk = _sklearn_optimum(X, y, C=100.0)
    gap = objective_value(est.coef_, est.intercept_, X, y, C=100.0) - objective_value(
        sk.coef_, sk.intercept_, X, y, C=100.0
    )
    assert gap < 1e-6


def test_a_metric_measured_between_minibatches_keeps_the_minibatch_step_rule():
    """check_estimator's heavily class-weighted blobs in batches of 16: the decrement fell
    below tol mid-way, the fresh metric was adopted with the full-batch rule (lr=1,
    momentum 0) while mini-batches went on, and Newton steps on 16 rows drove the
    intercepts to saturation (a decrement of 9e82 and a false warning at the end)."""
    from sklearn.datasets import make_blobs
    from sklearn.model_selection import train_test_split

    X, y = make_blobs(centers=3, random_state=0, cluster_std=20)
    X, _, y, _ = train_test_split(X, y, test_size=0.5, random_state=0)
    class_weight = {0: 1000, 1: 0.0001, 2: 0.0001}
    weights = np.array([class_weight[c] for c in y])
    full = TorchLogisticRegression(class_weight=class_weight).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        mini = TorchLogisticRegression(class_weight=class_weight, batch_size=16, random_state=0)
        mini.fit(X, y)
    J_full, J_mini = (
        objective_value(m.coef_, m.intercept_, X, y, sample_weight=weights) for m in (full, mini)
    )
    assert abs(J_mini - J_full) < 1e-7  # both within tol's gap of the optimum
    np.testing.assert_allclose(mini.intercept_, full.intercept_, atol=0.1)


def test_same_random_state_gives_bit_identical_coef(breast_cancer):
    X, y = breast_cancer
    a = TorchLogisticRegression(batch_size=50, random_state=7, max_iter=5).fit(X, y)
    b = TorchLogisticRegression(batch_size=50, random_state=7, max_iter=5).fit(X, y)
    c = TorchLogisticRegression(batch_size=50, random_state=8, max_iter=5).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert not np.array_equal(a.coef_, c.coef_)


def test_fit_and_predict_leave_global_state_alone(breast_cancer):
    X, y = breast_cancer
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    threads_before = torch.get_num_threads()
    filters_before = list(warnings.filters)
    est = TorchLogisticRegression(batch_size=64, random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        filters_inside = list(warnings.filters)
        est.fit(X, y)
        est.predict_proba(X)
        assert list(warnings.filters) == filters_inside
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before
    assert list(warnings.filters) == filters_before


def test_random_state_none_uses_numpy_global_state(breast_cancer):
    X, y = breast_cancer
    kw = dict(batch_size=50, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        np.random.seed(0)
        a = TorchLogisticRegression(**kw).fit(X, y)
        np.random.seed(0)
        b = TorchLogisticRegression(**kw).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_warm_start_resumes_from_the_solution(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression(warm_start=True, tol=1e-6, max_iter=5000).fit(X, y)
    first = est.n_iter_
    est.fit(X, y)
    assert est.n_iter_ < first / 4


def test_nesterov(breast_cancer):
    X, y = breast_cancer
    sk = _sklearn_optimum(X, y)
    est = TorchLogisticRegression(nesterov=True, tol=1e-7, max_iter=5000).fit(X, y)
    assert _rel_max_diff(est.coef_, sk.coef_) < 1e-3


def test_user_momentum_kept_with_auto_lr(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression(momentum=0.5).fit(X, y)
    assert est.momentum_ == 0.5


def test_partial_fit_streams_to_the_optimum(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    chunks = np.array_split(np.arange(len(y)), 4)
    for _ in range(60):
        for idx in chunks:
            est.partial_fit(X[idx], y[idx], classes=[0, 1])
    assert est.n_iter_ == 240 and len(est.loss_curve_) == 240
    assert est.score(X, y) > 0.97
    with pytest.raises(ValueError, match="not the same"):
        est.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:, :3], y)


def test_partial_fit_rejects_balanced(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(ValueError, match="balanced"):
        TorchLogisticRegression(class_weight="balanced").partial_fit(X, y, classes=[0, 1])


def test_pipeline_and_grid_search(breast_cancer):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), TorchLogisticRegression())
    search = GridSearchCV(pipe, {"torchlogisticregression__C": [0.1, 1.0]}, cv=3).fit(X, y)
    assert search.best_score_ > 0.95


# ------------------------------------------------------------ persistence


def test_pickle_clone_joblib(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression().fit(X, y)
    for restored in (
        pickle.loads(pickle.dumps(est)),
        copy.deepcopy(est),
        _joblib_roundtrip(est),
    ):
        np.testing.assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
    fresh = clone(est)
    assert not hasattr(fresh, "coef_") and fresh.get_params() == est.get_params()


def _joblib_roundtrip(est):
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    return joblib.load(buf)


def test_partial_fit_continues_after_pickle(breast_cancer):
    X, y = breast_cancer
    a = TorchLogisticRegression(random_state=0).partial_fit(X, y, classes=[0, 1])
    b = pickle.loads(pickle.dumps(a))
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


# -------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make_bad, match",
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y), "NaN"),
        (
            lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), y),
            "infinity",
        ),
        (lambda X, y: (X, np.zeros_like(y)), "one class"),
        (lambda X, y: (X, np.linspace(0, 1, len(y))), "Unknown label type"),
        (lambda X, y: (torch.full((3, 2), float("nan")), [0, 1, 0]), "NaN"),
    ],
)
def test_bad_input_gets_a_clear_value_error(make_bad, match, breast_cancer):
    X, y = breast_cancer
    Xb, yb = make_bad(X, y)
    with pytest.raises(ValueError, match=match):
        TorchLogisticRegression().fit(Xb, yb)


def test_negative_sample_weight(breast_cancer):
    X, y = breast_cancer
    sw = np.ones(len(y))
    sw[0] = -1
    with pytest.raises(ValueError, match="[Nn]egative"):
        TorchLogisticRegression().fit(X, y, sample_weight=sw)


def test_zero_weight_sum(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(ValueError, match="non-zero"):
        TorchLogisticRegression().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="sum to zero"):
        TorchLogisticRegression(class_weight={0: 0.0, 1: 0.0}).fit(X, y)


def test_wrong_feature_count_and_unfitted(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(NotFittedError):
        TorchLogisticRegression().predict(X)
    est = TorchLogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but TorchLogisticRegression is"):
        est.predict(X[:, :5])


@pytest.mark.parametrize(
    "params",
    [
        dict(C=0),
        dict(C=-1.0),
        dict(l1_ratio=1.5),
        dict(lr=0),
        dict(lr="fast"),
        dict(momentum=1.0),
        dict(batch_size=0),
        dict(max_iter=0),
        dict(tol=-1),
    ],
)
def test_invalid_parameters(params, lesson_data):
    with pytest.raises(InvalidParameterError):
        TorchLogisticRegression(**params).fit(*lesson_data)


def test_nesterov_needs_momentum(lesson_data):
    with pytest.raises(ValueError, match="nesterov"):
        TorchLogisticRegression(nesterov=True, momentum=0.0, lr=0.1).fit(*lesson_data)


@pytest.mark.parametrize("device", ["tpu", "cuda:banana", "cuda:99", "mps"])
def test_unknown_or_unavailable_device(device, lesson_data):
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    with pytest.raises(ValueError, match="device"):
        TorchLogisticRegression(device=device).fit(*lesson_data)


def test_divergence_raises_and_keeps_the_previous_fit(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression().fit(X, y)
    coef, module, n_iter = est.coef_.copy(), est.module_, est.n_iter_
    weight = module.linear.weight.detach().clone()
    est.set_params(lr=1e4, momentum=0.9)
    with pytest.raises(DivergenceError, match=r"lr=1e\+04.*smaller lr"):
        est.fit(X, y)
    np.testing.assert_array_equal(est.coef_, coef)
    assert est.module_ is module and est.n_iter_ == n_iter
    assert torch.equal(module.linear.weight, weight)
    assert isinstance(DivergenceError("x"), ValueError)


def test_auto_lr_on_badly_scaled_data_does_not_diverge():
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    X = X * np.array([1e-3, 1.0, 1e3, 10.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = TorchLogisticRegression().fit(X, y)
    assert np.all(np.isfinite(est.coef_))
    assert est.score(X, y) > 0.8


def test_track_gradients_records_one_row_per_epoch(lesson_data):
    X, y = lesson_data
    plain = TorchLogisticRegression().fit(X, y)
    assert not hasattr(plain, "gradient_history_")
    est = TorchLogisticRegression(track_gradients=True).fit(X, y)
    h = est.gradient_history_
    for key in ("objective", "grad_norm", "update_norm", "distance_from_init"):
        assert h[key].shape == (est.n_iter_,)
    np.testing.assert_array_equal(h["objective"], est.loss_curve_)
    assert h["coef"].shape == (est.n_iter_, 1, 2) and h["intercept"].shape == (est.n_iter_, 1)
    np.testing.assert_allclose(h["coef"][-1], est.coef_)
    assert h["distance_from_init"][-1] == pytest.approx(
        np.sqrt((est.coef_**2).sum() + (est.intercept_**2).sum()), rel=1e-5
    )
    np.testing.assert_array_equal(plain.coef_, est.coef_)  # free when off, same training
