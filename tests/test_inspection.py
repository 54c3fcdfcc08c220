"""Every autograd quantity of the inspector against its closed form, in float64."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris, make_classification

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.inspection import GradientInspector

TOL = 1e-8


def _case(n_classes, weighted, fit_intercept=True, l1_ratio=0.0):
    X, y = make_classification(
        n_samples=120,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        n_classes=n_classes,
        random_state=0,
    )
    est = TorchLogisticRegression(
        C=0.5, l1_ratio=l1_ratio, fit_intercept=fit_intercept, max_iter=30
    )
    sw = np.random.RandomState(1).uniform(0.2, 3.0, len(y)) if weighted else None
    est.fit(X, y, sample_weight=sw)  # max_iter=30 may warn; only its shapes matter here
    rng = np.random.RandomState(2)
    # Parameters that are not the optimum, some coefficients exactly zero.
    coef = rng.randn(*est.coef_.shape)
    coef[0, 0] = 0.0
    intercept = rng.randn(*est.intercept_.shape)
    return est, X, y, sw, coef, intercept


pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CASES = [(k, w) for k in (2, 3) for w in (False, True)]


@pytest.mark.parametrize("n_classes, weighted", CASES)
@pytest.mark.parametrize("l1_ratio", [0.0, 0.5])
def test_gradient_matches_closed_form(n_classes, weighted, l1_ratio):
    est, X, y, sw, coef, intercept = _case(n_classes, weighted, l1_ratio=l1_ratio)
    insp = GradientInspector(est, X, y, sw, coef=coef, intercept=intercept)
    report = insp.gradient()
    assert report["max_abs_error"] <= TOL
    assert report["autograd"]["coef"].shape == est.coef_.shape
    assert report["autograd"]["intercept"].shape == est.intercept_.shape
    np.testing.assert_allclose(
        report["autograd"]["coef"], report["analytic"]["coef"], rtol=0, atol=TOL
    )
    assert np.abs(report["autograd"]["coef"]).max() > 1e-3  # not the optimum


@pytest.mark.parametrize("n_classes, weighted", CASES)
def test_per_sample_gradients_match_closed_form(n_classes, weighted):
    est, X, y, sw, coef, intercept = _case(n_classes, weighted)
    insp = GradientInspector(est, X, y, sw, coef=coef, intercept=intercept)
    auto = insp.per_sample_gradients()
    closed = insp.per_sample_gradients("analytic")
    n_params = est.coef_.size + est.intercept_.size
    assert auto.shape == (len(y), n_params)
    assert np.abs(auto - closed).max() <= TOL
    # Their weighted mean is the data part of the gradient (no penalty with C=inf).
    est_inf = TorchLogisticRegression(C=np.inf, max_iter=5).fit(X, y)
    insp_inf = GradientInspector(est_inf, X, y, sw, coef=coef, intercept=intercept)
    w = np.ones(len(y)) if sw is None else sw
    mean = (w[:, None] * insp_inf.per_sample_gradients()).sum(0) / w.sum()
    g = insp_inf.gradient()["autograd"]
    np.testing.assert_allclose(mean, np.r_[g["coef"].ravel(), g["intercept"]], atol=1e-12)


@pytest.mark.parametrize("n_classes, weighted", CASES)
def test_hessian_matches_closed_form(n_classes, weighted):
    est, X, y, sw, coef, intercept = _case(n_classes, weighted)
    report = GradientInspector(est, X, y, sw, coef=coef, intercept=intercept).hessian()
    assert report["max_abs_error"] <= TOL
    H = report["autograd"]
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    np.testing.assert_allclose(
        report["eigenvalues"], np.linalg.eigvalsh(report["analytic"]), atol=1e-10
    )
    if n_classes == 2:
        assert report["condition_number"] == pytest.approx(
            report["eigenvalues"][-1] / report["eigenvalues"][0]
        )
    else:  # the softmax's shared shift of the intercepts is flat
        assert report["effective_condition_number"] < report["condition_number"]


def test_no_intercept_model():
    est, X, y, _, coef, _ = _case(2, False, fit_intercept=False)
    insp = GradientInspector(est, X, y, coef=coef)
    assert insp.gradient()["autograd"]["intercept"] is None
    assert insp.per_sample_gradients().shape == (len(y), 5)
    assert insp.hessian()["max_abs_error"] <= TOL


def test_inspector_never_changes_the_estimator_nor_leaves_grads():
    est, X, y, sw, coef, intercept = _case(3, True)
    before = [p.detach().clone() for p in est.module_.parameters()]
    coef_before = est.coef_.copy()
    insp = GradientInspector(est, X, y, sw)
    first = insp.gradient()
    insp.per_sample_gradients()
    insp.hessian()
    insp.check()
    second = insp.gradient()
    np.testing.assert_array_equal(first["autograd"]["coef"], second["autograd"]["coef"])
    np.testing.assert_array_equal(est.coef_, coef_before)
    for p, b in zip(est.module_.parameters(), before, strict=True):
        assert torch.equal(p, b) and p.grad is None


def test_check_reports_gradcheck_and_saturation():
    est, X, y, _, coef, intercept = _case(2, False)
    report = GradientInspector(est, X, y, coef=coef, intercept=intercept).check()
    assert report["gradcheck"] and report["gradgradcheck"]
    assert report["gradient_max_abs_error"] <= TOL
    assert report["per_sample_max_abs_error"] <= TOL
    assert report["hessian_max_abs_error"] <= TOL
    calm = GradientInspector(est, X, y, coef=coef * 1e-3, intercept=intercept * 0).check()
    assert calm["n_saturated"] == 0
    wild = GradientInspector(est, X, y, coef=coef * 100, intercept=intercept).check()
    assert wild["n_saturated"] > len(y) // 2 and wild["max_abs_logit"] > 17
    multi, Xm, ym, _, cm, im = _case(3, False)
    assert GradientInspector(multi, Xm, ym, coef=cm * 1000, intercept=im).check()["n_saturated"] > 0


def test_recommendation_is_polyaks_and_cuts_the_lessons_epochs(lesson_data):
    X, y = lesson_data
    est = TorchLogisticRegression(C=1.0).fit(X, y)
    rec = GradientInspector(
        est, X, y, coef=np.zeros_like(est.coef_), intercept=np.zeros_like(est.intercept_)
    ).recommend_hyperparameters()
    L, mu = rec["L"], rec["mu"]
    kappa = L / mu
    assert rec["lr"] == pytest.approx(4 / (np.sqrt(L) + np.sqrt(mu)) ** 2)
    assert rec["momentum"] == pytest.approx(((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** 2)
    assert "Local theory" in rec["caveats"]
    common = dict(C=1.0, batch_size=None, tol=1e-4, max_iter=20_000)
    lesson = TorchLogisticRegression(lr=0.01, momentum=0.9, **common).fit(X, y)
    tuned = TorchLogisticRegression(lr=rec["lr"], momentum=rec["momentum"], **common).fit(X, y)
    assert tuned.n_iter_ < lesson.n_iter_ / 2
    np.testing.assert_allclose(tuned.coef_, lesson.coef_, rtol=1e-3)


def test_inspector_validates_parameters(lesson_data):
    X, y = lesson_data
    est = TorchLogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="coef must have shape"):
        GradientInspector(est, X, y, coef=np.zeros(3))
    with pytest.raises(ValueError, match="features"):
        GradientInspector(est, X[:, :1], y)


def test_inspector_says_what_it_inspects(lesson_data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = lesson_data
    with pytest.raises(TypeError, match="got LogisticRegression. Fit a TorchLogisticRegression"):
        GradientInspector(LogisticRegression().fit(X, y), X, y)
    pipe = make_pipeline(StandardScaler(), TorchLogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match=r"pipe\[:-1\].transform\(X\)"):
        GradientInspector(pipe, X, y)
    inspector = GradientInspector(pipe[-1], pipe[:-1].transform(X), y)
    assert inspector.gradient()["max_abs_error"] < 1e-10


@pytest.mark.parametrize("max_rows, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_check_refuses_a_bad_max_rows(max_rows, error):
    X, y = load_iris(return_X_y=True)
    inspector = GradientInspector(TorchLogisticRegression().fit(X, y), X, y)
    with pytest.raises(error, match="max_rows"):
        inspector.check(max_rows=max_rows)
