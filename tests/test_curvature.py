"""Hessians by autograd against the closed form; the step-size rules."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sktorch_lr._curvature as curvature
from sktorch_lr._curvature import (
    autograd_hessian,
    extreme_eigenvalues,
    heavy_ball_radius,
    heavy_ball_rule,
    lr_for_momentum,
    model_hessian,
    nesterov_rule,
    smooth_objective_of_theta,
)
from sktorch_lr._objective import Penalty, objective, penalty_strengths


def _binary_problem(n=80, d=4, seed=0):
    rng = np.random.RandomState(seed)
    X = torch.tensor(rng.randn(n, d))
    y = torch.tensor((rng.rand(n) > 0.5).astype(np.float64))
    sw = torch.tensor(rng.uniform(0.5, 2.0, n))
    return X, y, sw


@pytest.mark.parametrize("looped", [True, False])
def test_autograd_hessian_is_the_closed_form(looped, monkeypatch):
    if not looped:
        monkeypatch.setattr(curvature, "LOOPED_HESSIAN_MAX_PARAMS", 0)
    X, y, sw = _binary_problem()
    S = float(sw.sum())
    pen = penalty_strengths(0.5, 0.0, S)
    f = smooth_objective_of_theta(X, y, sw, pen, S, 1, True)
    theta = torch.tensor([0.3, -0.2, 0.5, 0.1, 0.05], dtype=torch.float64)
    H = autograd_hessian(f, theta)
    Xt = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    p = torch.sigmoid(Xt @ theta)
    closed = Xt.T @ (Xt * (sw * p * (1 - p))[:, None]) / S
    closed[:4, :4] += pen.l2 * torch.eye(4, dtype=X.dtype)
    assert (H - closed).abs().max() < 1e-12


def test_extreme_eigenvalues_dense_and_power_iteration(monkeypatch):
    X, y, sw = _binary_problem(d=6)
    S = float(sw.sum())
    f = smooth_objective_of_theta(X, y, sw, penalty_strengths(1.0, 0.0, S), S, 1, True)
    theta = torch.zeros(7, dtype=torch.float64)
    eig = torch.linalg.eigvalsh(autograd_hessian(f, theta))
    dense = extreme_eigenvalues(f, theta)
    assert dense.exact and dense.L == pytest.approx(float(eig[-1]), rel=1e-10)
    assert dense.mu == pytest.approx(float(eig[0]), rel=1e-10)
    monkeypatch.setattr(curvature, "LOOPED_HESSIAN_MAX_PARAMS", 0)
    monkeypatch.setattr(curvature, "DENSE_HESSIAN_MAX_PARAMS", 0)
    approx = extreme_eigenvalues(f, theta, mu_floor=1e-3)
    assert not approx.exact and approx.L == pytest.approx(float(eig[-1]), rel=1e-2)
    assert approx.mu == 1e-3


def test_heavy_ball_rule_is_polyaks():
    L, mu = 100.0, 1.0
    rule = heavy_ball_rule(L, mu)
    assert rule.lr == pytest.approx(4 / (10 + 1) ** 2)
    assert rule.momentum == pytest.approx((9 / 11) ** 2)
    assert rule.rate == pytest.approx(9 / 11)
    # Polyak's optimum: both extreme directions contract at sqrt(momentum).
    for h in (mu, L):
        assert heavy_ball_radius(rule.lr, rule.momentum, h) == pytest.approx(rule.rate)


def test_other_rules():
    L, mu = 100.0, 1.0
    nes = nesterov_rule(L, mu)
    assert nes.lr == 0.01 and nes.momentum == pytest.approx(9 / 11)
    fixed = lr_for_momentum(L, mu, 0.5)
    assert fixed.lr == pytest.approx(1.5 / L) and fixed.momentum == 0.5 and fixed.rate < 1


def test_condition_number_is_capped():
    rule = heavy_ball_rule(1.0, 0.0)
    assert math.isfinite(rule.condition_number) and rule.momentum < 1


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_model_hessian_equals_full_autograd_hessian(n_classes, fit_intercept):
    rng = np.random.RandomState(0)
    n, d = 60, 3
    K = 1 if n_classes == 2 else n_classes
    X = torch.tensor(rng.randn(n, d))
    y = torch.tensor(rng.randint(n_classes, size=n))
    y = y.double() if n_classes == 2 else y
    sw = torch.tensor(rng.uniform(0.5, 2.0, n))
    S = float(sw.sum())
    pen = penalty_strengths(0.3, 0.0, S)
    coef = torch.tensor(rng.randn(K, d))
    intercept = torch.tensor(rng.randn(K)) if fit_intercept else None
    f = smooth_objective_of_theta(X, y, sw, pen, S, K, fit_intercept)
    theta = torch.cat([coef.reshape(-1)] + ([intercept] if fit_intercept else []))
    full = autograd_hessian(f, theta)
    fast, grad = model_hessian(X, y, sw, pen, S, coef, intercept)
    assert (full - fast).abs().max() < 1e-12
    theta = theta.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(f(theta), theta)
    assert (grad - expected).abs().max() < 1e-12


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_diagonal_is_floored_where_predictions_are_certain(centred, weighted):
    """The Jacobi diagonal is the Hessian's diagonal, floored per column at
    DIAGONAL_FLOOR of its value at p = 1/2; dense and sparse X measure the same."""
    from sktorch_lr._data import TrainingData

    rng = np.random.RandomState(1)
    n = 200
    X = rng.randn(n, 3) * [1.0, 50.0, 0.01]
    # Column 1 lives in the rows its coefficient makes certain, as pairs x, -x of equal
    # weight (its mean stays 0: centring keeps the other rows uncertain).
    X[n // 4 : n // 2, 1] = -X[: n // 4, 1]
    X[n // 2 :, 1] = 0.0
    y = rng.randint(0, 3, n)
    sw = np.tile(rng.uniform(0.2, 2.0, n // 4), 4) if weighted else None
    coef = torch.tensor([[0.1, 20.0, 0.0], [0.0, -20.0, 0.3], [-0.1, 0.0, 0.0]]).double()
    c = torch.tensor([0.2, 0.0, -0.1]).double()
    pen = penalty_strengths(1e4, 1.0, float(n if sw is None else sw.sum()))  # no L2 part
    diagonals = []
    for layout in ("dense", "sparse"):
        Xin = sp.csr_matrix(X) if layout == "sparse" else X
        data = TrainingData(Xin, y, sw, binary=False, device="cpu", dtype=torch.float64)
        mean = data.weighted_mean() if centred else None
        P = curvature.measure_preconditioner(data, pen, coef, c, mean, "diagonal")
        diagonals.append(torch.cat([P.diagonals[0], P.diagonals[1][:, None]], 1))
    torch.testing.assert_close(diagonals[0], diagonals[1], rtol=1e-10, atol=0)

    s = np.ones(n) if sw is None else sw
    Xc = X - (np.average(X, axis=0, weights=s) if centred else 0.0)
    Z = Xc @ coef.numpy().T + c.numpy()
    p = np.exp(Z - Z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    Xa = np.c_[Xc, np.ones(n)]
    hessian = (s[:, None] * p * (1 - p)).T @ Xa**2 / s.sum()  # (K, d + 1)
    floor = curvature.DIAGONAL_FLOOR / 4 * (s @ Xa**2) / s.sum()
    expected = np.maximum(hessian, floor)
    np.testing.assert_allclose(diagonals[0].numpy(), expected, rtol=1e-10)
    binds = hessian < floor
    assert binds[:, 1].all() and binds.sum() == 3  # the certain column, in every class


@pytest.mark.parametrize("K", [3, 40])  # fewer classes than columns, and more
def test_class_blocks_are_the_per_class_hessian_blocks(K):
    rng = np.random.RandomState(0)
    Xa = torch.tensor(rng.randn(50, 6))
    a = torch.tensor(rng.rand(50, K))
    blocks = curvature.class_blocks(Xa, a)
    for k in (0, K - 1):
        expected = Xa.T @ (Xa * a[:, k : k + 1])
        assert (blocks[k] - expected).abs().max() < 1e-12


@pytest.mark.parametrize("kind", ["dense", "block", "diagonal"])
def test_measured_preconditioner_is_the_centred_autograd_hessian(kind):
    """P in the solver's centred parametrisation against full autograd of the objective."""
    from sktorch_lr._data import TrainingData
    from sktorch_lr._objective import objective

    rng = np.random.RandomState(0)
    X = rng.randn(120, 4) * [1, 3, 0.5, 2] + [5, -2, 0, 1]
    y = rng.randint(0, 3, 120)
    data = TrainingData(X, y, None, binary=False, device=torch.device("cpu"), dtype=torch.float64)
    pen = penalty_strengths(0.5, 0.0, data.weight_sum)
    mean = data.weighted_mean()
    coef = torch.tensor(rng.randn(3, 4) * 0.1)
    c = torch.tensor(rng.randn(3) * 0.1)
    P = curvature.measure_preconditioner(data, pen, coef, c, mean, kind)

    def f(theta):
        W, cc = theta[:12].reshape(3, 4), theta[12:]
        return objective(W, cc - W @ mean, data.X, data.y, None, pen, normalizer=120.0)

    H = autograd_hessian(f, torch.cat([coef.reshape(-1), c]))
    if kind == "dense":
        assert (P.H - H).abs().max() < 1e-12
        return
    for k in range(3):  # the class blocks, and their diagonals
        idx = [k * 4 + j for j in range(4)] + [12 + k]
        block = H[idx][:, idx]
        if kind == "block":
            assert (P.blocks[k] - block).abs().max() < 1e-12
        else:
            diag = torch.cat([P.diagonals[0][k], P.diagonals[1][k : k + 1]])
            assert (diag - block.diagonal()).abs().max() < 1e-12


@pytest.mark.parametrize("K", [1, 3, 20])
def test_logit_curvature_diagonal_autograd_is_the_closed_form(K):
    from sktorch_lr._curvature import logit_curvature_diagonal

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(50, K, generator=gen, dtype=torch.float64)
    sw = torch.rand(50, generator=gen, dtype=torch.float64)
    if K == 1:
        closed = (torch.sigmoid(z) * torch.sigmoid(-z)) * (sw / 7.0)[:, None]
    else:
        closed = logit_curvature_diagonal(z, sw, 7.0, by_autograd=False)
    auto = logit_curvature_diagonal(z, sw, 7.0, by_autograd=True)
    torch.testing.assert_close(auto, closed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_link_jacobian_is_the_losss_second_derivative(K, weighted):
    # The canonical link: the Jacobian of sigmoid/softmax is the cross-entropy's
    # Hessian in the logits, which logit_curvature takes by a double backward.
    from sktorch_lr._curvature import link_jacobian, logit_curvature

    gen = torch.Generator().manual_seed(1)
    z = 4.0 * torch.randn(40, K, generator=gen, dtype=torch.float64)
    sw = torch.rand(40, generator=gen, dtype=torch.float64) if weighted else None
    if K == 1:
        y = (torch.rand(40, generator=gen) > 0.5).double()
    else:
        y = torch.randint(0, K, (40,), generator=gen)
    expected, _ = logit_curvature(z, y, sw, 3.0)
    torch.testing.assert_close(link_jacobian(z, sw, 3.0), expected, rtol=1e-12, atol=1e-15)
    diagonal = torch.diagonal(expected, dim1=1, dim2=2)
    torch.testing.assert_close(link_jacobian(z, sw, 3.0, diagonal=True), diagonal)


@pytest.mark.parametrize("kind, K", [("dense", 1), ("dense", 3), ("block", 4)])
def test_batch_curvature_is_each_problems_hessian(kind, K):
    """BatchProblem.measure against the autograd Hessian of each problem, centred."""
    from sktorch_lr._batch import BatchProblem
    from sktorch_lr._curvature import autograd_hessian

    rng = np.random.default_rng(0)
    n, d, B = 60, 3, 3
    X = torch.as_tensor(rng.normal(size=(n, d)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 0.0])
    y = torch.as_tensor(rng.integers(0, max(K, 2), n))
    y = y.double() if K == 1 else y
    weights = torch.as_tensor(rng.integers(0, 3, size=(B, n)).astype(float))
    l2 = torch.tensor([0.0, 0.01, 1.0], dtype=torch.float64)
    problem = BatchProblem(X, y, weights, l2, n_outputs=K, fit_intercept=True)
    coef = torch.as_tensor(rng.normal(size=(B, K, d)) * 0.1)
    intercept = torch.as_tensor(rng.normal(size=(B, K)))
    H = problem.measure(coef, intercept, torch.arange(B), kind)
    problem.keep_logits = True
    problem.evaluate(coef, intercept, torch.arange(B))
    coef_v = torch.as_tensor(rng.normal(size=(B, K, d)))
    intercept_v = torch.as_tensor(rng.normal(size=(B, K)))
    along = problem.curvature_along(problem.logits, coef_v, intercept_v, torch.arange(B))
    m = d + 1
    for p in range(B):
        mean = problem.mean[p]
        S = float(weights[p].sum())

        def f(theta, p=p, mean=mean, S=S):
            t = theta.reshape(K, m)
            W, c = t[:, :d], t[:, d]
            penalty = Penalty(float(l2[p]), 0.0)  # l2 = 1 / (C S), as the batch holds it
            return objective(W, c - W @ mean, X, y, weights[p], penalty, normalizer=S)

        theta = torch.cat([coef[p], intercept[p][:, None]], 1).reshape(-1)
        full = autograd_hessian(f, theta)
        # The curvature along a direction (ConjugateStep's), from the kept logits.
        v = torch.cat([coef_v[p], intercept_v[p][:, None]], 1).reshape(-1)
        assert float(along[p]) == pytest.approx(float(v @ full @ v), rel=1e-10)
        if kind == "dense":
            torch.testing.assert_close(H[p, 0], full, rtol=1e-9, atol=1e-12)
        else:
            for k in range(K):
                block = full[k * m : (k + 1) * m, k * m : (k + 1) * m]
                torch.testing.assert_close(H[p, k], block, rtol=1e-9, atol=1e-12)


def _logits_along(n, K, weighted, seed):
    """Logits ``Z``, a change ``z``, optional weights and labels, for the along-tests."""
    gen = torch.Generator().manual_seed(seed)
    Z = 3 * torch.randn(n, K, generator=gen, dtype=torch.float64)
    z = torch.randn(n, K, generator=gen, dtype=torch.float64)
    sw = torch.rand(n, generator=gen, dtype=torch.float64) if weighted else None
    if K == 1:
        y = (torch.rand(n, generator=gen) > 0.5).double()
    else:
        y = torch.randint(0, K, (n,), generator=gen)
    return Z, z, sw, y


@pytest.mark.parametrize("K", [1, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_logit_derivatives_along_are_autograds(K, weighted):
    """The data term's d/dt and d^2/dt^2 at Z + t z (t = 0), in closed form and by autograd."""
    from sktorch_lr._curvature import logit_derivatives_along
    from sktorch_lr._objective import data_term

    Z, z, sw, y = _logits_along(50, K, weighted, seed=10 + K)

    def along(t):
        return data_term(Z + t * z, y, sw, 7.0)

    t = torch.zeros((), dtype=torch.float64)
    first = torch.autograd.functional.jacobian(along, t)
    second = torch.autograd.functional.hessian(along, t)
    weights = torch.ones(50, dtype=torch.float64) if sw is None else sw
    got = [float((part * weights).sum() / 7.0) for part in logit_derivatives_along(Z, y, z)]
    assert got[0] == pytest.approx(float(first), rel=1e-12)
    assert got[1] == pytest.approx(float(second), rel=1e-12)


@pytest.mark.parametrize("K", [1, 3, 40])
@pytest.mark.parametrize("weighted", [False, True])
def test_logit_curvature_along_is_autograds_second_derivative(K, weighted):
    """``sum_i z_i^T A_i z_i`` in closed form against d^2/dt^2 of the data term at Z + t z."""
    from sktorch_lr._curvature import logit_curvature_along
    from sktorch_lr._objective import data_term

    Z, z, sw, y = _logits_along(60, K, weighted, seed=K)

    def along(t):
        return data_term(Z + t * z, y, sw, 9.0)

    expected = torch.autograd.functional.hessian(along, torch.zeros((), dtype=torch.float64))
    got = logit_curvature_along(Z, sw, 9.0, z)
    assert float(got) == pytest.approx(float(expected), rel=1e-12)
    # float32 logits: computed in float64 all the same.
    got32 = logit_curvature_along(Z.float(), None if sw is None else sw.float(), 9.0, z.float())
    assert got32.dtype == torch.float64
    assert float(got32) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("K", [1, 4])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("layout", ["dense", "sparse", "no intercept", "centred"])
def test_linear_model_hvp_is_the_double_backward_product(K, weighted, layout):
    """The Hessian-vector product as the gradient of half the curvature along v
    equals Pearlmutter's double backward through the whole objective."""
    from sktorch_lr._curvature import hessian_vector_product, linear_model_hvp, split_theta
    from sktorch_lr._objective import linear_logits

    rng = np.random.default_rng(K + 10 * weighted)
    n, d = 70, 6
    Xd = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d) + rng.normal(size=d) * 3
    Xd[rng.random((n, d)) < 0.4] = 0.0
    X = torch.tensor(Xd)
    if layout == "sparse":
        X = X.to_sparse()
    y = torch.tensor(rng.integers(0, max(K, 2), n))
    y = y.double() if K == 1 else y
    sw = torch.tensor(rng.uniform(0.2, 3.0, n)) if weighted else None
    S = float(n if sw is None else sw.sum())
    pen = penalty_strengths(0.7, 0.0, S)
    fit_intercept = layout != "no intercept"
    mean = torch.tensor(Xd.mean(0)) if layout == "centred" else None
    n_params = K * d + (K if fit_intercept else 0)
    theta = torch.tensor(rng.normal(size=n_params) * 0.3)

    def f(t):  # the objective in the problem's parametrisation (intercept c - W mean)
        coef, intercept = split_theta(t, K, d, fit_intercept)
        if intercept is not None and mean is not None:
            intercept = intercept - coef @ mean
        return objective(coef, intercept, X, y, sw, pen, normalizer=S, include_l1=False)

    coef, intercept = split_theta(theta, K, d, fit_intercept)
    if intercept is not None and mean is not None:
        intercept = intercept - coef @ mean
    hvp = linear_model_hvp(X, linear_logits(X, coef, intercept), sw, S, pen.l2, mean)
    for _ in range(3):
        v = torch.tensor(rng.normal(size=n_params))
        expected = hessian_vector_product(f, theta, v)
        coef_v, intercept_v = split_theta(v, K, d, fit_intercept)
        got = torch.cat([h.reshape(-1) for h in hvp(coef_v, intercept_v)])
        np.testing.assert_allclose(
            got, expected, rtol=1e-10, atol=1e-12 * float(expected.abs().max())
        )


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("kind", ["dense", "block"])
def test_stale_decrement_bound_holds(K, kind):
    """The decrement in a metric measured afresh never exceeds the bound from the drift."""
    from sktorch_lr._curvature import logit_drift, stale_decrement_bound
    from sktorch_lr._objective import linear_logits

    rng = np.random.default_rng(K)
    n, d = 80, 3
    X = torch.as_tensor(rng.normal(size=(n, d)) * [1.0, 5.0, 0.2])
    y = torch.as_tensor(rng.integers(0, max(K, 2), n))
    y = y.double() if K == 1 else y
    sw = torch.as_tensor(rng.uniform(0.5, 2.0, n))
    penalty = Penalty(0.01, 0.0)

    def metric(coef, intercept):
        H, g = model_hessian(X, y, sw, penalty, float(sw.sum()), coef, intercept)
        if kind == "block":
            mask = torch.zeros_like(H, dtype=torch.bool)
            for k in range(K):
                idx = [k * d + j for j in range(d)] + [K * d + k]
                mask[np.ix_(idx, idx)] = True
            H = torch.where(mask, H, 0.0)
        return H, g

    ratios = []
    for trial in range(40):
        coef = torch.as_tensor(rng.normal(size=(K, d)))
        intercept = torch.as_tensor(rng.normal(size=K))
        H_then, _ = metric(coef, intercept)
        scale = 10.0 ** rng.uniform(-3, 0.5)
        coef2 = coef + scale * torch.as_tensor(rng.normal(size=(K, d)))
        intercept2 = intercept + scale * torch.as_tensor(rng.normal(size=K))
        H_now, g = metric(coef2, intercept2)
        if K > 1:  # the softmax's shared shift: off the problem (as the solver projects it)
            H_then = H_then + 1e-9 * torch.eye(len(g), dtype=H_then.dtype)
            H_now = H_now + 1e-9 * torch.eye(len(g), dtype=H_now.dtype)
        stale = float(g @ torch.linalg.solve(H_then, g)) ** 0.5
        fresh = float(g @ torch.linalg.solve(H_now, g)) ** 0.5
        drift = logit_drift(linear_logits(X, coef2, intercept2), linear_logits(X, coef, intercept))
        bound = stale_decrement_bound(stale, kind, drift)
        assert fresh <= bound * (1 + 1e-9), (trial, fresh, bound)
        ratios.append(bound / fresh)
    assert min(ratios) < 1.5  # small moves: the bound is close
    assert stale_decrement_bound(1.0, "diagonal", 0.0) is None


@pytest.mark.parametrize("kind", ["dense", "block"])
def test_stale_decrement_bound_of_a_drift_past_floats_range_is_infinite(kind):
    """Logits that moved by thousands (separated classes running off) bound nothing:
    the bound is inf, not math.exp's OverflowError; per problem, inf where it overflows."""
    from sktorch_lr._curvature import stale_decrement_bound

    assert stale_decrement_bound(1e-6, kind, 2.2e4) == math.inf
    assert stale_decrement_bound(1e-6, kind, 1.0) < 1e-5
    bounds = stale_decrement_bound(
        torch.tensor([1e-6, 1e-6], dtype=torch.float64), kind, torch.tensor([1.0, 2.2e4])
    )
    assert bounds[0] < 1e-5 and bounds[1] == math.inf


@pytest.mark.parametrize("m", [1, 2, 7, 51])
def test_upper_products_are_the_row_products_in_triu_order(m):
    from sktorch_lr._curvature import upper_products

    X = torch.randn(37, m, dtype=torch.float64)
    rows, cols = torch.triu_indices(m, m)
    assert torch.equal(upper_products(X), X[:, rows] * X[:, cols])


def _ill_conditioned_metric(rng, p):
    """SPD ``M``: eigenvalues over six decades, coordinates scaled over six more."""
    Q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    scales = 10.0 ** rng.uniform(-3, 3, p)
    M = (Q * np.logspace(-3, 3, p)) @ Q.T * np.outer(scales, scales)
    return torch.as_tensor((M + M.T) / 2), torch.as_tensor(scales)


def test_metric_proximal_l1_of_a_diagonal_metric_is_soft_thresholding():
    from sktorch_lr._curvature import metric_proximal_l1

    rng = np.random.default_rng(0)
    D = torch.as_tensor(10.0 ** rng.uniform(-3, 3, 12))
    v = torch.as_tensor(rng.normal(size=12)) / D.sqrt()
    t = torch.as_tensor(rng.uniform(0, 2, 12)) * D.sqrt()
    t[-2:] = 0.0  # unpenalised (intercepts)
    for start in (torch.zeros(12, dtype=torch.float64), v.clone(), -v):
        u = metric_proximal_l1(torch.diag(D), v, start, t)
        expected = v.sign() * (v.abs() - t / D).clamp_min(0.0)
        torch.testing.assert_close(u, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_metric_proximal_l1_meets_its_optimality_conditions(seed):
    """``argmin 1/2 (u - v)^T M (u - v) + sum t_j |u_j|`` on ill-conditioned metrics, from
    any start: on the nonzero coordinates ``M (u - v) = -t sign(u)``, on the zeros
    ``|M (u - v)| <= t``, zero for the unpenalised ones; the same solution (unique:
    M is definite) from every start."""
    from sktorch_lr._curvature import metric_proximal_l1

    rng = np.random.default_rng(seed)
    p = int(rng.integers(5, 60))
    M, scales = _ill_conditioned_metric(rng, p)
    v = torch.as_tensor(rng.normal(size=p)) / scales
    t = torch.as_tensor(rng.uniform(0, 3, p)) * scales * (rng.random() * 10)
    t[: int(rng.integers(0, 4))] = 0.0
    norm = float(v @ M @ v) ** 0.5
    starts = [torch.zeros(p, dtype=torch.float64), v.clone()]
    starts.append(torch.as_tensor(rng.normal(size=p) * (rng.random(p) < 0.5)) / scales)
    solutions = []
    for start in starts:
        u = metric_proximal_l1(M, v, start, t)
        r = M @ (u - v)
        unit = M.diagonal().sqrt() * norm  # violations relative to the problem's scale
        on = u != 0
        assert torch.all((r + t * u.sign()).abs()[on] <= 1e-9 * unit[on])
        assert torch.all((r.abs() - t)[~on] <= 1e-9 * unit[~on])
        assert torch.all(r[t == 0].abs() <= 1e-9 * unit[t == 0])
        solutions.append(u)
    for u in solutions[1:]:
        torch.testing.assert_close(u * scales, solutions[0] * scales, rtol=0, atol=1e-7)


def test_restricted_decrement_is_the_decrement_on_the_free_coordinates():
    from sktorch_lr._curvature import restricted_decrement

    rng = np.random.default_rng(3)
    H, _ = _ill_conditioned_metric(rng, 9)
    g = torch.as_tensor(rng.normal(size=9))
    everything = torch.ones(9, dtype=torch.bool)
    full = float(g @ torch.linalg.solve(H, g)) ** 0.5
    assert restricted_decrement(H, g, everything) == pytest.approx(full, rel=1e-6)
    free = torch.as_tensor(rng.random(9) < 0.5)
    sub = H[free][:, free]
    expected = float(g[free] @ torch.linalg.solve(sub, g[free])) ** 0.5
    assert restricted_decrement(H, g, free) == pytest.approx(expected, rel=1e-6)
    assert restricted_decrement(H, g, torch.zeros(9, dtype=torch.bool)) == 0.0
