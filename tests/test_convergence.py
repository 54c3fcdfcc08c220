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
from sktorch_lr._objective import penalty_strengths

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


@pytest.mark.slow
@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
@pytest.mark.parametrize("scaling", ["raw", "standardised"])
@pytest.mark.parametrize("name", list(LOADERS))
def test_l1_default_fits_converge_everywhere(name, scaling, l1_ratio):
    """The sweep above with an L1 part: every C, float64 and float32, no ConvergenceWarning,
    within 1e-5 (float32: 1e-4) of a tight fit. Before the diagonal's floor and the fresh
    metric's start from the step that worked, ten of these fits (raw and standardised
    digits at C >= 167, standardised breast cancer at C=1e4, l1_ratio=1) stopped with a
    warning, up to 7e-4 above the optimum."""
    X, y = _data(name, scaling)
    for C in CS:

        def J(model, C=C):
            return objective_value(model.coef_, model.intercept_, X, y, C=C, l1_ratio=l1_ratio)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tight = TorchLogisticRegression(C=C, l1_ratio=l1_ratio, tol=1e-10, max_iter=20_000)
            optimum = J(tight.fit(X, y))
        for dtype in ("float64", "float32"):
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)
                est = TorchLogisticRegression(C=C, l1_ratio=l1_ratio).fit(X.astype(dtype), y)
            assert J(est) - optimum <= (1e-4 if dtype == "float32" else 1e-5), (C, dtype)


@pytest.mark.parametrize("name", list(LOADERS))
def test_loss_curve_never_rises_with_auto_lr(name):
    X, y = _data(name, "raw")
    est = TorchLogisticRegression(C=1e4).fit(X, y)
    curve = np.asarray(est.loss_curve_)
    assert (np.diff(curve) <= 1e-12 * np.abs(curve[:-1])).all()


def _random_problem(seed):
    """Data no bundled set has: scales over six decades, offsets up to 3,000 spreads,
    duplicated and constant columns, weights, wide and tall, 2 to 12 classes."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([30, 120, 600, 2500]))
    d = int(rng.choice([1, 3, 15, 60, 150]))
    n_classes = int(rng.choice([2, 2, 3, 5, 12]))
    Z = rng.normal(size=(n, d))
    if rng.random() < 0.3 and d > 2:
        Z[:, 1] = Z[:, 0]
    if rng.random() < 0.2:
        Z[:, -1] = 1.0
    logits = Z @ (rng.normal(size=(d, n_classes)) * rng.choice([0.3, 1, 4]))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(n_classes, p=row) for row in p])
    scale = 10.0 ** rng.uniform(-3, 3, size=d) if rng.random() < 0.6 else np.ones(d)
    offset = rng.choice([0, 0, 5, 1e3]) * rng.normal(size=d)
    X = (Z + offset) * scale
    return dict(
        X=X,
        y=y,
        C=float(rng.choice([1e-10, 1e-4, 1e-2, 1, 100, 1e4])),
        sample_weight=rng.uniform(0.1, 3, size=n) if rng.random() < 0.3 else None,
        fit_intercept=bool(rng.random() < 0.85),
        dtype="float32" if rng.random() < 0.3 else "float64",
        sparse=bool(rng.random() < 0.2),
    )


# 1020: float32, 12 nearly separable classes, C=1e4: falls per epoch below what float32
# sums resolve (once stopped with a ConvergenceWarning after switching to float64 sums).
# 2002: binary, 150 unscaled offset columns, no intercept (once 1,000 epochs, far off).
@pytest.mark.slow
@pytest.mark.parametrize("seed", [*range(40), 1020, 2002])
def test_default_fit_reaches_the_optimum_on_random_problems(seed):
    """Only C, the intercept and the weights set; the optimum the best of scikit-learn's
    exact solvers and a tight float64 fit of ours (on offset data without an intercept
    scikit-learn's stop short)."""
    case = _random_problem(seed)
    X, y, C, sw = case["X"], case["y"], case["C"], case["sample_weight"]
    if len(np.unique(y)) < 2:
        pytest.skip("one class drawn")
    common = dict(C=C, fit_intercept=case["fit_intercept"])

    def J(model):
        intercept = model.intercept_ if case["fit_intercept"] else np.zeros(len(model.intercept_))
        return objective_value(model.coef_, intercept, X, y, C=C, sample_weight=sw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimum = J(TorchLogisticRegression(**common, tol=1e-10, max_iter=5000).fit(X, y, sw))
        for solver in ("newton-cholesky", "lbfgs"):
            ref = LogisticRegression(**common, solver=solver, tol=1e-12, max_iter=10_000)
            optimum = min(optimum, J(ref.fit(X, y, sample_weight=sw)))
    Xf = X.astype(case["dtype"])
    if case["sparse"]:
        Xf = sp.csr_matrix(Xf)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(**common).fit(Xf, y, sample_weight=sw)
    assert J(est) - optimum <= (1e-4 if case["dtype"] == "float32" else 1e-5)


# Random problem 52: float32, 2,500 x 60, columns 3,000 spreads from zero. Float32's
# rounding (the model intercept cancels W @ mean in every logit: errors of 1e-5 in J)
# rejected Newton steps until lr was halved eight times and the metric damped; the switch
# to float64 sums then kept that step, which rounded away in the parameters, and stalled
# with a ConvergenceWarning. The switch now starts from a fresh metric and the rule's step.
def test_float32_offset_fit_takes_full_steps_after_the_switch_to_float64_sums():
    case, C = _random_problem(52), 1.0
    X, y, sw = case["X"], case["y"], case["sample_weight"]
    assert case["dtype"] == "float32" and case["fit_intercept"] and len(np.unique(y)) == 2

    def J(model):
        return objective_value(model.coef_, model.intercept_, X, y, C=C, sample_weight=sw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # float64's own floor
        optimum = J(TorchLogisticRegression(C=C, tol=1e-8).fit(X, y, sample_weight=sw))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=C).fit(X.astype(np.float32), y, sample_weight=sw)
    assert J(est) - optimum <= 1e-4


# float32 elastic-net fits that once stopped with a ConvergenceWarning: their penalty was
# summed in float32 after the switch to float64 sums, noise that float64's rounding
# threshold then read as rises of the objective.
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 11, 41, 45, 57])
def test_float32_elastic_net_fits_reach_the_optimum(seed):
    case = _random_problem(seed)
    X, y, C, sw = case["X"], case["y"], case["C"], case["sample_weight"]
    assert case["dtype"] == "float32" and not case["sparse"]
    common = dict(C=C, l1_ratio=0.5, fit_intercept=case["fit_intercept"])

    def J(model):
        intercept = model.intercept_ if case["fit_intercept"] else np.zeros(len(model.intercept_))
        return objective_value(model.coef_, intercept, X, y, C=C, l1_ratio=0.5, sample_weight=sw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimum = J(TorchLogisticRegression(**common, tol=1e-8, max_iter=5000).fit(X, y, sw))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(**common).fit(X.astype(np.float32), y, sample_weight=sw)
    assert J(est) - optimum <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("C", CS[7:9])
def test_l1_fits_in_the_diagonal_metric_do_not_stall_where_predictions_are_certain(C, monkeypatch):
    """Raw digits, l1_ratio=1, C of 167 and 1,292 (ten classes: the diagonal metric). Pixels
    lit only in rows predicted with certainty have a measured curvature ten decades under
    their scale; unfloored, the step along them jumped off, every step was rejected and
    the fit stopped 7e-4 and 1.6e-4 above the optimum with a ConvergenceWarning. The
    optimum: a tight fit in the full Hessian's metric, where the proximal step is exact."""
    X, y = _data("digits", "raw")

    def J(model):
        return objective_value(model.coef_, model.intercept_, X, y, C=C, l1_ratio=1.0)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=C, l1_ratio=1.0).fit(X, y)
    import sktorch_lr._curvature as curvature

    monkeypatch.setattr(curvature, "MAX_DENSE_MULTINOMIAL_PARAMS", 10 * 65)
    tight = TorchLogisticRegression(C=C, l1_ratio=1.0, tol=1e-8, max_iter=3000).fit(X, y)
    assert J(est) - J(tight) <= 1e-5


def test_nearly_separable_l1_fit_converges_in_the_full_metric(breast_cancer):
    """Standardised breast cancer, l1_ratio=1, C=1e4: nearly separable, proximal Newton
    re-measured every epoch. Each fresh metric's full step was rejected twice (the second
    rejection damping the metric) before a quarter step was accepted: all 1,000 epochs,
    1.2e-4 above the optimum, a ConvergenceWarning. Starting a fresh metric from twice
    the step that last worked, it converges in under a hundred."""
    X, y = breast_cancer
    C = 1e4

    def J(model):
        return objective_value(model.coef_, model.intercept_, X, y, C=C, l1_ratio=1.0)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=C, l1_ratio=1.0).fit(X, y)
    assert est.n_iter_ < 150
    tight = TorchLogisticRegression(C=C, l1_ratio=1.0, tol=1e-10, max_iter=20_000).fit(X, y)
    assert J(est) - J(tight) <= 1e-5


def _wide_or_l1_problem(seed):
    """A wide sparse problem (more than 1,024 features: the diagonal metric, whose step
    size comes from power iteration on Hessian-vector products) or a small L1 /
    elastic-net one (the dense metric and its proximal step)."""
    rng = np.random.default_rng(seed)
    K = int(rng.choice([2, 3, 5]))
    if seed % 2:
        n, d = int(rng.integers(200, 600)), int(rng.integers(1100, 3000))
        X = sp.random(n, d, density=rng.uniform(0.003, 0.02), random_state=seed, format="csr")
        X = X * rng.uniform(0.5, 20)
        W = rng.normal(size=(d, K)) * (rng.random((d, 1)) < 0.05) * 5
        l1_ratio = 0.0
    else:
        n, d = int(rng.integers(60, 200)), int(rng.integers(2, 25))
        X = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, d)
        W = rng.normal(size=(d, K)) * (rng.random((d, 1)) < 0.4)
        l1_ratio = float(rng.choice([0.3, 0.7, 1.0]))
        if rng.random() < 0.4:
            X = sp.csr_matrix(np.where(rng.random((n, d)) < 0.6, 0.0, X))
    y = np.argmax(X @ W + rng.gumbel(size=(n, K)), 1)
    return X, y, float(10 ** rng.uniform(-2, 2)), l1_ratio


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_diagonal_metric_fits_reach_the_optimum(seed):
    """Default fits (only C and l1_ratio set) reach scikit-learn's tight optimum: lbfgs
    for the wide L2 problems, saga for the L1 / elastic-net ones."""
    X, y, C, l1_ratio = _wide_or_l1_problem(seed)
    if len(np.unique(y)) < 2:
        pytest.skip("one class drawn")
    solver = "saga" if l1_ratio else "lbfgs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegression(
            C=C, l1_ratio=l1_ratio, solver=solver, tol=1e-12, max_iter=200_000
        ).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=C, l1_ratio=l1_ratio).fit(X, y)
    Xd = X.toarray() if sp.issparse(X) else X

    def J(model):
        return objective_value(model.coef_, model.intercept_, Xd, y, C=C, l1_ratio=l1_ratio)

    assert J(est) - J(ref) <= 1e-5


def _coupled_l1_problem(seed):
    """Drawn L1 / elastic-net problems of five classes, features over four decades
    of scale (the draws of a fuzzing sweep that found the diagonal metric's stops)."""
    r = np.random.default_rng(seed)
    n, d, K = int(r.integers(20, 400)), int(r.integers(1, 25)), int(r.choice([2, 2, 3, 5]))
    scale = 10.0 ** r.uniform(-2, 2, d) if r.random() < 0.5 else np.ones(d)
    offset = r.normal(size=d) * 3 * (r.random() < 0.3)
    X = (r.normal(size=(n, d)) + offset) * scale
    Z = X @ (r.normal(size=(K, d)) / scale * r.uniform(0.3, 3) * (r.random((K, d)) < 0.5)).T
    P = np.exp(Z - Z.max(1, keepdims=True))
    y = (r.random((n, 1)) < (P / P.sum(1, keepdims=True)).cumsum(1)).argmax(1)
    C = float(10.0 ** r.choice([-3, -2, -1, 0, 1, 2]))
    l1_ratio = float(r.choice([1.0, 0.5, 0.1, 0.9]))
    sample_weight = r.uniform(0, 3, n) if r.random() < 0.3 else None
    return X, y, C, l1_ratio, sample_weight


def _l1_gap_certificate(model, X, y, C, l1_ratio, sample_weight):
    """``g_F^T H_FF^-1 g_F / 2`` at the model, from autograd's exact Hessian: ``g`` the
    minimum-norm subgradient, ``F`` the coordinates nonzero or pushed off zero (and
    the intercepts). Near the optimum, about the objective's distance to it."""
    import torch

    from sktorch_lr._curvature import autograd_hessian, smooth_objective_of_theta
    from sktorch_lr._objective import optimality_gradient

    K, d = model.coef_.shape
    S = len(y) if sample_weight is None else float(np.sum(sample_weight))
    penalty = penalty_strengths(C, l1_ratio, S)
    target = torch.as_tensor(y == 1, dtype=torch.float64) if K == 1 else torch.as_tensor(y)
    sw = None if sample_weight is None else torch.as_tensor(sample_weight)
    f = smooth_objective_of_theta(torch.as_tensor(X), target, sw, penalty, S, K, True)
    theta = torch.as_tensor(np.concatenate([model.coef_.ravel(), model.intercept_]))
    theta.requires_grad_(True)
    (g,) = torch.autograd.grad(f(theta), theta)
    H = autograd_hessian(f, theta)
    coef = theta.detach()[: K * d]
    g[: K * d] = optimality_gradient(g[: K * d], coef, penalty.l1)
    free = torch.cat([(coef != 0) | (g[: K * d] != 0), torch.ones(K, dtype=torch.bool)])
    gF, HF = g[free], H[free][:, free]
    # The intercepts' shared shift is an exact null direction of a softmax's Hessian
    # (LU found it exactly singular on one machine and not on another): the
    # pseudo-inverse leaves it out, and the gradient has no part along it.
    return 0.5 * float(gF @ torch.linalg.pinv(HF, hermitian=True) @ gF)


@pytest.mark.parametrize("seed", [105, 157, 208, 275, 360])
def test_l1_fits_of_coupled_classes_reach_the_optimum(seed):
    """Five classes with an L1 part: in the Hessian's diagonal, whose decrement bounds
    nothing where classes and columns are coupled, these fits stopped 1e-5 to 2e-4 above
    the optimum without a warning, or ran all 1,000 epochs and warned. In the dense
    metric, whose proximal step is a small quadratic program, they converge in 6-15
    epochs, to within the decrement's promise (about tol**2 / 2)."""
    X, y, C, l1_ratio, sw = _coupled_l1_problem(seed)
    assert len(np.unique(y)) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=C, l1_ratio=l1_ratio).fit(X, y, sample_weight=sw)
    tight = TorchLogisticRegression(C=C, l1_ratio=l1_ratio, tol=1e-10, max_iter=5000)
    tight.fit(X, y, sample_weight=sw)
    assert _l1_gap_certificate(tight, X, y, C, l1_ratio, sw) < 1e-14

    def J(model):
        return objective_value(
            model.coef_, model.intercept_, X, y, C=C, l1_ratio=l1_ratio, sample_weight=sw
        )

    assert J(est) - J(tight) <= 5e-8
    assert _l1_gap_certificate(est, X, y, C, l1_ratio, sw) <= 5e-8
    assert (est.coef_ == 0).any()  # a sparse solution: the prox's exact zeros


def test_partial_fit_with_an_l1_part_keeps_the_diagonal_metric(breast_cancer):
    """partial_fit measures its metric on one chunk and keeps it, with no rejection of
    rising steps: the proximal step in such a chunk's dense metric jumped along the
    directions the chunk does not resolve (coefficients of 366 at the 34th call of
    100-row chunks, divergence at the 66th). Its L1 steps soft-threshold in the
    diagonal metric, as the lesson's mini-batch SGD would."""
    X, y = breast_cancer
    est = TorchLogisticRegression(C=1.0, l1_ratio=1.0, random_state=0)
    start = objective_value(np.zeros((1, X.shape[1])), np.zeros(1), X, y, C=1.0, l1_ratio=1.0)
    for _ in range(12):
        for s in range(0, len(X), 100):
            est.partial_fit(X[s : s + 100], y[s : s + 100], classes=[0, 1])
    assert est._solver_state.preconditioner.kind == "diagonal"
    assert np.abs(est.coef_).max() < 20
    J = objective_value(est.coef_, est.intercept_, X, y, C=1.0, l1_ratio=1.0)
    assert J < 0.3 * start


@pytest.mark.parametrize("container", ["dense", "sparse", "float32"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_unpenalised_fit_with_constant_columns(container, n_classes):
    """A constant column (3.0) repeats the intercept's direction. Its centred curvature
    and gradient were rounding noise that the metric turned into coefficients of 1e23
    (4 classes: an objective 0.6 above the optimum, a ConvergenceWarning; float32
    binary: 0.1 above it, silently). Its coefficient now stays at zero, an optimum."""
    rng = np.random.default_rng(n_classes)
    n = 300
    Z = rng.normal(size=(n, 3)) * [1.0, 1e5, 1e-3]
    logits = (Z / [1.0, 1e5, 1e-3]) @ rng.normal(size=(3, n_classes))
    y = np.argmax(logits + rng.gumbel(size=(n, n_classes)), 1)
    X = np.column_stack([Z[:, 0], np.full(n, 3.0), Z[:, 1], np.zeros(n), Z[:, 2]])
    ref = LogisticRegression(C=np.inf, tol=1e-14, max_iter=20_000).fit(X, y)
    Xf = X.astype(np.float32) if container == "float32" else X
    Xf = sp.csr_matrix(Xf) if container == "sparse" else Xf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = TorchLogisticRegression(C=np.inf).fit(Xf, y)
    assert np.all(est.coef_[:, 1] == 0)
    gap = objective_value(est.coef_, est.intercept_, X, y, C=np.inf) - objective_value(
        ref.coef_, ref.intercept_, X, y, C=np.inf
    )
    assert gap <= (1e-4 if container == "float32" else 1e-5)


def test_warm_start_takes_a_constant_columns_coefficient_to_the_penalty_optimum():
    """Under L2 the optimum has a constant column's coefficient at zero: a warm start
    from elsewhere gets there (the penalty's gradient is kept, not projected away)."""
    X, y = load_iris(return_X_y=True)
    X = np.column_stack([X, np.full(len(X), 2.0)])
    est = TorchLogisticRegression(C=1.0, warm_start=True).fit(X, y)
    est.coef_ = est.coef_.copy()
    est.coef_[:, -1] = [5.0, -1.0, -4.0]
    est.fit(X, y)
    np.testing.assert_allclose(est.coef_[:, -1], 0.0, atol=1e-4)
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
    assert (
        objective_value(est.coef_, est.intercept_, X, y)
        - objective_value(ref.coef_, ref.intercept_, X, y)
        <= 1e-5
    )


def _degenerate_design(seed):
    """Unpenalised problems on the columns users feed in by mistake or by habit: constant
    (a column of ones beside the intercept), all-zero, duplicated, scaled by up to 1e6
    either way, or 1e5 from zero; noisy labels, 2 to 6 classes."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([80, 300, 1000]))
    d = int(rng.choice([3, 6, 12]))
    n_classes = int(rng.choice([2, 3, 6]))
    Z = rng.normal(size=(n, d))
    y = np.argmax(Z @ rng.normal(size=(d, n_classes)) * 2 + rng.gumbel(size=(n, n_classes)), 1)
    X = Z.copy()
    for j in range(d):
        r = rng.random()
        if r < 0.15:
            X[:, j] = rng.choice([1.0, 3.0, -0.7])
        elif r < 0.22:
            X[:, j] = 0.0
        elif r < 0.32 and j > 0:
            X[:, j] = X[:, 0]
        elif r < 0.45:
            X[:, j] *= 10 ** rng.uniform(-6, 6)
        elif r < 0.5:
            X[:, j] += 1e5
    return X, y, bool(rng.random() < 0.5), bool(rng.random() < 0.3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_unpenalised_fits_of_degenerate_designs(seed):
    """C=inf on constant, zero, duplicated, extreme-scale and offset columns reaches the
    best of scikit-learn's tight fits (the optimum's value; the coefficients are not
    unique) without a warning. Constant columns once sent these to 1e23."""
    X, y, sparse, float32 = _degenerate_design(seed)
    if len(np.unique(y)) < 2:
        pytest.skip("one class drawn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = [
            LogisticRegression(C=np.inf, solver=s, tol=1e-14, max_iter=20_000).fit(X, y)
            for s in ("newton-cholesky", "lbfgs")
        ]
    optimum = min(objective_value(r.coef_, r.intercept_, X, y, C=np.inf) for r in refs)
    Xf = X.astype(np.float32) if float32 else X
    Xf = sp.csr_matrix(Xf) if sparse else Xf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = TorchLogisticRegression(C=np.inf).fit(Xf, y)
    gap = objective_value(est.coef_, est.intercept_, X, y, C=np.inf) - optimum
    assert gap <= (1e-4 if float32 else 1e-5)


def test_tight_unpenalised_fit_of_separated_classes_ends_without_an_error():
    """A fold of a drawn degenerate design (53 rows, 12 columns, 3 separable classes) at
    tol=1e-10: the objective reaches 1e-16, the logit curvatures 1e-17, and the measured
    Hessian, rounding by then, was indefinite past any damping: "The measured Hessian is
    not positive semi-definite" (a ValueError) ended the fit. Now the metric falls back
    to its diagonal and the fit ends at float64's floor."""
    from sklearn.model_selection import StratifiedKFold

    X, y, _, _ = _degenerate_design(42)
    train, _ = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))[1]
    est = TorchLogisticRegression(C=np.inf, tol=1e-10, max_iter=5000).fit(X[train], y[train])
    assert est.score(X[train], y[train]) == 1.0
    assert objective_value(est.coef_, est.intercept_, X[train], y[train], C=np.inf) < 1e-12
