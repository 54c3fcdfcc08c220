"""The hostile-user matrix: every bad input a clear error, a failed fit changes nothing,
no side effects, scikit-learn's semantics (one test per finding of the reliability issue)."""

import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression

from sktorch_lr import DivergenceError, TorchLogisticRegression
from sktorch_lr.inspection import GradientInspector


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    return X, (X[:, 0] > 0).astype(int)


# ------------------------------------------- a failed fit changes nothing


@pytest.mark.parametrize("failure", ["divergence", "interrupt"])
def test_failed_fit_on_other_width_leaves_the_old_model(data, failure, monkeypatch):
    import pandas as pd

    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    est = TorchLogisticRegression(lr=0.5).fit(frame, y)
    before = est.predict_proba(frame)
    wide = np.hstack([X, X])
    if failure == "divergence":
        est.set_params(lr=1e12, momentum=0.9)
        with pytest.raises(DivergenceError):
            est.fit(wide * 1e3, y)
    else:
        import sktorch_lr._estimator as module

        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(module, "solve", interrupt)
        with pytest.raises(KeyboardInterrupt):
            est.fit(wide, y)
    assert est.n_features_in_ == 3
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_array_equal(est.predict_proba(frame), before)


def test_partial_fit_after_fit_uses_none_of_the_full_batch_rules(data):
    X, y = data
    est = TorchLogisticRegression().fit(X, y)
    est.partial_fit(X, y)
    assert not est._solver_state.adaptive


def test_partial_fit_honours_a_new_lr(data):
    X, y = data
    est = TorchLogisticRegression(lr=0.1).partial_fit(X, y, classes=[0, 1])
    est.set_params(lr=0.5, momentum=0.0)
    est.partial_fit(X, y)
    assert est.lr_ == 0.5 and est.momentum_ == 0.0


# ------------------------------------------------ scikit-learn's semantics


def test_balanced_class_weight_counts_sample_weights():
    X, y = load_iris(return_X_y=True)
    y = (y == 2).astype(int)
    sw = np.ones(len(y))
    sw[:50] = 3.0
    ours = TorchLogisticRegression(class_weight="balanced", tol=1e-10).fit(X, y, sample_weight=sw)
    ref = LogisticRegression(class_weight="balanced", tol=1e-12, max_iter=10_000).fit(
        X, y, sample_weight=sw
    )
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-5)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-4, atol=1e-6)


def test_balanced_class_weight_leaves_out_a_class_without_weight():
    # All of class 2's sample weights zero: scikit-learn's formula divides by its zero
    # count (this raised "sum to more than float64 can hold"). It takes no part; the
    # other two are balanced among themselves.
    X, y = load_iris(return_X_y=True)
    sw = np.where(y == 2, 0.0, np.where(y == 0, 2.0, 1.0))
    ours = TorchLogisticRegression(class_weight="balanced", tol=1e-10).fit(X, y, sample_weight=sw)
    S0, S1 = sw[y == 0].sum(), sw[y == 1].sum()
    by_hand = {0: (S0 + S1) / (2 * S0), 1: (S0 + S1) / (2 * S1), 2: 0.0}
    ref = TorchLogisticRegression(class_weight=by_hand, tol=1e-10).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8, atol=1e-12)


def test_assigned_coef_and_intercept_are_the_model(data):
    X, y = data
    est = TorchLogisticRegression().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning on read-only input either
        est.coef_ = np.broadcast_to(0.0, (1, 3))
        est.intercept_ = 5.0
    assert (est.predict(X) == 1).all()
    assert float(est.module_.linear.bias) == 5.0
    est.intercept_[:] = -5.0  # in place, too
    assert (est.predict(X) == 0).all()
    with pytest.raises(ValueError, match="shape"):
        est.coef_ = np.zeros((2, 3))


def test_float32_training_keeps_float32_coefficients(data):
    X, y = data
    est = TorchLogisticRegression().fit(X.astype(np.float32), y)
    assert est.coef_.dtype == np.float32 and est.intercept_.dtype == np.float32


def test_warnings_point_at_the_callers_line(data):
    X, y = data
    with pytest.warns(Warning) as record:
        TorchLogisticRegression(max_iter=1, lr="auto").fit(X * 100, y)
    assert record[0].filename == __file__


# ----------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    "scale", ["all", "one column", "two columns"], ids=["X*1e300", "1e154", "2 cols 1e300"]
)
def test_extreme_finite_data_gets_a_clear_error(data, scale):
    X, y = data
    X = X.copy()
    if scale == "all":
        X *= 1e300
    elif scale == "one column":
        X[:, 0] = 1e154
    else:
        X[:, :2] *= 1e300
    with pytest.raises(ValueError, match="Rescale the features"):
        TorchLogisticRegression().fit(X, y)


@pytest.mark.parametrize(
    "container", ["tensor", "fortran", "read-only", "reversed", "sparse", "negative"]
)
def test_extreme_values_are_found_in_every_container(data, container):
    """The magnitude check reads a view of X where torch can share its memory, numpy's
    max and min where it cannot; the largest |x| may be negative."""
    X, y = data

    def wrap(X):
        X = X.copy()
        if container == "tensor":
            return torch.as_tensor(X)
        if container == "fortran":
            return np.asfortranarray(X)
        if container == "read-only":
            X.flags.writeable = False
        elif container == "reversed":
            return X[::-1]
        elif container == "sparse":
            return sp.csr_matrix(X)
        return X

    large = X.copy()
    large[3, 1] = -1e200 if container == "negative" else 1e200
    with pytest.raises(ValueError, match="as large as 1e\\+200"):
        TorchLogisticRegression().fit(wrap(large), y[::-1] if container == "reversed" else y)
    TorchLogisticRegression(max_iter=2, tol=0).fit(wrap(X), y)  # no false alarm


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "container", ["numpy", "float32", "read-only", "reversed", "sparse", "tensor", "frame"]
)
@pytest.mark.parametrize("entry", ["fit", "partial_fit", "cv", "inspector"])
def test_non_finite_values_are_found_in_every_container(data, bad, container, entry):
    """Fitting reads X's extremes once for both checks (finite, not too large); a NaN
    or an infinity anywhere gets scikit-learn's message (a tensor's own), and a model
    fitted before is left as it was."""
    import pandas as pd

    from sktorch_lr import TorchLogisticRegressionCV

    X, y = data
    Z = X.copy()
    Z[17, 2] = bad
    if container == "float32":
        Z = Z.astype(np.float32)
    elif container == "read-only":
        Z.flags.writeable = False
    elif container == "reversed":
        Z, y = Z[::-1], y[::-1]
    elif container == "sparse":
        Z = sp.csc_matrix(Z)
    elif container == "tensor":
        Z = torch.as_tensor(Z)
    elif container == "frame":
        Z = pd.DataFrame(Z)
    if container == "tensor":
        match = "NaN or infinity"
    else:
        match = "NaN" if np.isnan(bad) else "infinity"
    est = TorchLogisticRegression(max_iter=5).fit(X, y)
    before = est.coef_.copy()
    with pytest.raises(ValueError, match=match):
        if entry == "fit":
            est.fit(Z, y)
        elif entry == "partial_fit":
            est.partial_fit(Z, y)
        elif entry == "cv":
            TorchLogisticRegressionCV(Cs=2, cv=2).fit(Z, y)
        else:
            GradientInspector(est, Z, y)
    np.testing.assert_array_equal(est.coef_, before)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_class_weight(data, bad):
    X, y = data
    with pytest.raises(ValueError, match="class_weight contains NaN or infinity"):
        TorchLogisticRegression(class_weight={0: 1.0, 1: bad}).fit(X, y)


def test_weight_sums_that_overflow_or_underflow(data):
    X, y = data
    with pytest.raises(ValueError, match="more than float64 can hold"):
        TorchLogisticRegression().fit(X, y, sample_weight=np.full(len(y), 1e307))
    with pytest.raises(ValueError, match="too small"):
        TorchLogisticRegression().fit(X, y, sample_weight=np.full(len(y), 1e-310))


def test_bad_tensors_and_classes(data):
    X, y = data
    with pytest.raises(ValueError, match="0 feature"):
        TorchLogisticRegression().fit(torch.zeros(60, 0), y)
    with pytest.raises(ValueError, match="meta"):
        TorchLogisticRegression().fit(torch.empty(60, 3, device="meta"), y)
    with pytest.raises(ValueError, match="NaN"):
        TorchLogisticRegression().partial_fit(X, y, classes=[0, 1, np.nan])


def test_plotting_errors(data):
    pytest.importorskip("matplotlib")
    from sktorch_lr.plotting import (
        plot_decision_boundary,
        plot_loss_curve,
        plot_training_snapshots,
    )

    X, y = data
    with pytest.raises(NotFittedError):
        plot_decision_boundary(TorchLogisticRegression(), X[:, :2], y)
    with pytest.raises(NotFittedError):
        plot_loss_curve(TorchLogisticRegression())
    est = TorchLogisticRegression(track_gradients=True).fit(X[:, :2], y)
    with pytest.raises(ValueError, match="ncols"):
        plot_training_snapshots(est, X[:, :2], y, ncols=0)
    with pytest.raises(ValueError, match="two features"):
        plot_decision_boundary(TorchLogisticRegression().fit(X[:, :1], y), X[:, :1], y)


# ------------------------------------------------------- inputs that work


def test_negative_strides(data):
    X, y = data
    a = TorchLogisticRegression().fit(X[::-1], y[::-1])
    b = TorchLogisticRegression().fit(np.ascontiguousarray(X[::-1]), y[::-1])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.predict_proba(X[:, ::-1][:, ::-1]), a.predict_proba(X))
    TorchLogisticRegression().fit(X[:, ::-1], y).predict(X[:, ::-1])


def test_strided_views_fit_as_their_copies(data):
    X, y = data
    wide = np.hstack([X, X])
    for view in (wide[:, : X.shape[1]], wide[:, ::2]):
        a = TorchLogisticRegression().fit(view, y)
        b = TorchLogisticRegression().fit(np.ascontiguousarray(view), y)
        np.testing.assert_array_equal(a.coef_, b.coef_)
        np.testing.assert_array_equal(a.intercept_, b.intercept_)


def test_read_only_and_pandas_sample_weight_warn_nothing(data):
    import pandas as pd

    X, y = data
    sw = np.linspace(0.5, 2.0, len(y))
    sw.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TorchLogisticRegression().fit(X, y, sample_weight=sw)
        TorchLogisticRegression().fit(X, y, sample_weight=pd.Series(sw))


def test_requires_grad_tensor_is_left_alone(data):
    X, y = data
    Xt = torch.tensor(X, requires_grad=True)
    est = TorchLogisticRegression().fit(Xt, torch.tensor(y))
    est.predict_proba(Xt)
    assert Xt.grad is None


def test_float32_model_never_predicts_nan(data):
    X, y = data
    est = TorchLogisticRegression().fit(X.astype(np.float32), y)
    far = X * 1e40  # beyond float32's range, still float64
    for method in ("predict_proba", "predict_log_proba", "decision_function"):
        out = getattr(est, method)(far)
        assert not np.isnan(out).any()
    multi = TorchLogisticRegression().fit(X.astype(np.float32), np.digitize(X[:, 1], [-0.5, 0.5]))
    assert np.isfinite(multi.predict_proba(far)).all()


# ------------------------------------------------------------ side effects


def test_check_leaves_the_global_rng_alone(data):
    X, y = data
    est = TorchLogisticRegression().fit(X, y)
    state = torch.random.get_rng_state()
    GradientInspector(est, X, y).check()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_large_fits_add_no_warnings_filter():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 40))
    y = rng.integers(0, 10, 300)
    before = list(warnings.filters)
    TorchLogisticRegression(max_iter=3).fit(X, y)
    TorchLogisticRegression(l1_ratio=0.5, max_iter=3).fit(X, y)
    assert warnings.filters == before


_FIT_EVERY_WAY = """
import sys
import numpy as np
import scipy.sparse as sp
from sktorch_lr import TorchLogisticRegression, TorchLogisticRegressionCV
from sktorch_lr.inspection import GradientInspector

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 5))
for y in (rng.integers(0, 2, 200), rng.integers(0, 4, 200)):
    for data in (X, sp.csr_matrix(X)):
        TorchLogisticRegression().fit(data, y)
        TorchLogisticRegression(l1_ratio=0.5).fit(data, y)
        TorchLogisticRegression(batch_size=32, max_iter=5).fit(data, y)
    TorchLogisticRegressionCV(Cs=3, cv=3).fit(X, y)
    GradientInspector(TorchLogisticRegression(C=np.inf).fit(X, y), X, y).summary()
print("torch.fx.experimental.symbolic_shapes" in sys.modules)
"""


def test_fits_do_not_import_torchs_symbolic_shapes():
    """Autograd called with explicit gradient tensors imports torch's symbolic-shape
    machinery (and sympy) on its first use: 0.3 s, which made a process's first fit
    of breast cancer take 354 ms against 9 ms for the next. No fit passes them."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FIT_EVERY_WAY], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_gradient_history_always_has_n_iter_rows(data):
    X, y = data
    est = TorchLogisticRegression(track_gradients=True)
    est.partial_fit(X, y, classes=[0, 1])
    est.partial_fit(X, y)
    assert est.n_iter_ == 2 and len(est.gradient_history_["objective"]) == 2
    est.fit(X, y)
    assert len(est.gradient_history_["coef"]) == est.n_iter_
    est.set_params(track_gradients=False).fit(X, y)
    assert not hasattr(est, "gradient_history_")


# ------------------------------------------------------- a busy machine


def test_small_fits_restore_the_thread_setting(data):
    X, y = data
    threads = torch.get_num_threads()
    TorchLogisticRegression().fit(X, y).predict(X)
    assert torch.get_num_threads() == threads


def test_concurrent_fits_in_threads_match_serial_ones(data):
    X, y = data
    threads = torch.get_num_threads()
    serial = [TorchLogisticRegression(C=C).fit(X, y).coef_.copy() for C in (0.1, 1.0, 10.0)]
    results = {}

    def fit(i, C):
        results[i] = TorchLogisticRegression(C=C).fit(X, y).coef_.copy()

    workers = [threading.Thread(target=fit, args=(i, C)) for i, C in enumerate((0.1, 1.0, 10.0))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for i, coef in enumerate(serial):
        np.testing.assert_array_equal(results[i], coef)
    assert torch.get_num_threads() == threads


def test_validation_and_inspection_of_small_data_run_on_one_thread(data, monkeypatch):
    # A second thread woken for a small pass waits behind a busy core: X's check of
    # values before each fit (once per fit of a grid search) and the inspector's
    # methods and the cross-validation's held-out scores run on one, as the fit's own
    # kernels do.
    from sktorch_lr.inspection import GradientInspector

    X, y = data
    seen = []
    real_aminmax, real_pieces = torch.aminmax, GradientInspector._hessian_pieces

    def aminmax(*args, **kwargs):
        seen.append(("aminmax", torch.get_num_threads()))
        return real_aminmax(*args, **kwargs)

    def pieces(self):
        seen.append(("hessian", torch.get_num_threads()))
        return real_pieces(self)

    def accuracies(*args):
        seen.append(("cv scores", torch.get_num_threads()))
        return real_accuracies(*args)

    from sktorch_lr import TorchLogisticRegressionCV, _cv

    real_accuracies = _cv._fold_accuracies
    monkeypatch.setattr(torch, "aminmax", aminmax)
    monkeypatch.setattr(GradientInspector, "_hessian_pieces", pieces)
    monkeypatch.setattr(_cv, "_fold_accuracies", accuracies)
    threads = torch.get_num_threads()
    est = TorchLogisticRegression(C=1.0).fit(X, y)
    GradientInspector(est, X, y).summary()
    TorchLogisticRegressionCV(Cs=2, cv=2).fit(X, y)
    assert ("aminmax", 1) in seen and ("hessian", 1) in seen and ("cv scores", 1) in seen
    assert {n for _, n in seen} == {1}
    assert torch.get_num_threads() == threads


def test_small_cholesky_factors_run_on_one_thread(monkeypatch):
    # Batches of small factors gain nothing from a second thread and stall behind a
    # busy core; one large factor keeps the process's threads.
    from sktorch_lr import _curvature

    seen = []
    real = torch.linalg.cholesky_ex

    def spy(A, **kwargs):
        seen.append((A.shape[-1], torch.get_num_threads()))
        return real(A, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", spy)
    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    for order in (5, 151, 600):
        A = torch.randn(3, order, 2 * order, dtype=torch.float64, generator=gen)
        H = A @ A.mT
        L = _curvature.damped_cholesky(H)
        g = torch.randn(3, order, 1, dtype=torch.float64, generator=gen)
        # The factor is of H + DAMPING * diag(H) (damped_cholesky's safety damping): an
        # unseeded comparison with H's own solve failed once in ~20 runs on an entry
        # 1e5 times smaller than the rest.
        damped = H + _curvature.DAMPING * torch.diag_embed(torch.diagonal(H, dim1=-2, dim2=-1))
        expected = np.linalg.solve(damped.numpy(), g.numpy())
        np.testing.assert_allclose(_curvature.cholesky_solve(g, L), expected, rtol=1e-5)
    assert seen[0] == (5, 1) and seen[1] == (151, 1)
    assert seen[2] == (600, threads)
    assert torch.get_num_threads() == threads


def test_unpenalised_fit_of_separated_classes_whose_logits_run_off():
    """A drawn problem (60 rows, 10 features over four decades, 4 classes: separable)
    whose unpenalised logits reach 2e4: the stale metric's decrement bound overflowed
    math.exp and the fit raised OverflowError. It now fits every training label."""
    rng = np.random.default_rng(255)
    n, d, K = (int(rng.choice(v)) for v in ([60, 200, 1000, 5000], [1, 3, 6, 10], [2, 2, 3, 4]))
    assert (n, d, K) == (60, 10, 4)
    scale, shift = 10 ** rng.uniform(-2, 2, d), rng.normal(0, 3, d)
    X = rng.normal(size=(n, d)) * scale + shift
    B = rng.normal(size=(K, d)) / scale * 0.7
    Z = (X - shift) @ B.T + rng.normal(size=K) * 0.5
    y = np.argmax(Z + rng.gumbel(size=(n, K)), 1)
    est = TorchLogisticRegression(C=np.inf).fit(X, y)
    assert est.score(X, y) == 1.0
    assert np.all(np.isfinite(est.coef_))


def test_float32_model_that_cannot_hold_its_fit_warns():
    """Separable rows (6 x 40, unpenalised) with columns 1e5 from zero: float32 sums
    stalled, training went on in float64 and reached J=1e-8 in the centred
    parametrisation, but the float32 model (coefficients of 1e6, an intercept that
    cancels W @ mean of 1e11) had J=8,192, and no warning. Now it says so; in float64 the
    same fit is fine."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 40))
    X[:, :8] += 1e5
    y = np.array([0, 1, 0, 1, 1, 0])
    with pytest.warns(ConvergenceWarning, match="float32 cannot hold these coefficients"):
        TorchLogisticRegression(C=np.inf).fit(X.astype(np.float32), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = TorchLogisticRegression(C=np.inf).fit(X, y)
    z = est.decision_function(X)
    assert np.mean(np.logaddexp(0, z) - y * z) < 1e-5
