"""The solver: torch.optim.SGD's step, and each lr="auto" rule on synthetic sequences."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sktorch_lr._curvature import DensePreconditioner, heavy_ball_radius
from sktorch_lr._data import TrainingData
from sktorch_lr._objective import objective, penalty_strengths
from sktorch_lr._solver import (
    BatchGrowth,
    ConjugateStep,
    DivergenceError,
    Problem,
    RemeasureSchedule,
    SolverState,
    SpectrumEstimate,
    StallStop,
    StepControl,
    momentum_step_,
    solve,
)


@pytest.mark.parametrize(
    "nesterov, momentum",
    [(False, 0.0), (False, 0.9), (True, 0.9)],  # nesterov needs momentum
)
def test_momentum_step_is_torch_optim_sgd(nesterov, momentum):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    y = (torch.rand(50, generator=gen) > 0.5).double()
    ours = [
        torch.zeros(1, 4, dtype=torch.float64, requires_grad=True),
        torch.zeros(1, dtype=torch.float64, requires_grad=True),
    ]
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    opt = torch.optim.SGD(ref, lr=0.3, momentum=momentum, nesterov=nesterov)
    state = SolverState(lr=0.3, momentum=momentum, nesterov=nesterov, adaptive=False)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(20):
        for params, step in ((ours, lambda: momentum_step_(ours, state)), (ref, opt.step)):
            loss = loss_fn((X @ params[0].T + params[1])[:, 0], y)
            loss.backward()
            step()
            for p in params:
                p.grad = None
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a, b)


def _data(n=200, d=6, seed=0, offset=0.0, sparse=False):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d) + offset
    y = (X[:, 0] - offset + 0.5 * rng.randn(n) > 0).astype(np.float64)
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0))
    return TrainingData(X, y, None, binary=True, device=torch.device("cpu"), dtype=torch.float64)


def _params(d=6):
    return [
        torch.zeros(1, d, dtype=torch.float64, requires_grad=True),
        torch.zeros(1, dtype=torch.float64, requires_grad=True),
    ]


def _solve(state, penalty=None, centred=False, **kw):
    """``solve`` on the default problem from zero parameters, full batch: (result, params)."""
    data = _data()
    penalty = penalty or penalty_strengths(1.0, 0.0, data.weight_sum)
    problem = Problem(data, penalty, fit_intercept=True, centred=centred)
    params = _params()
    kw = {"max_iter": 1000, "tol": 1e-6, **kw}
    result = solve(params, problem, state, batch_size=None, generator=torch.Generator(), **kw)
    return result, params


def test_proximal_step_gives_exact_zeros():
    penalty = penalty_strengths(0.1, 1.0, _data().weight_sum)
    state = SolverState(lr=0.5, momentum=0.5, nesterov=False, adaptive=False)
    result, params = _solve(state, penalty, max_iter=2000, tol=1e-8)
    assert result.converged
    coef = params[0].detach()[0]
    assert coef[0] != 0  # the informative feature survives
    assert (coef[1:] == 0).all()  # the noise features are exactly zero


def test_divergence_is_detected_with_a_fixed_lr():
    state = SolverState(lr=1e4, momentum=0.9, nesterov=False, adaptive=False)
    with pytest.raises(DivergenceError, match="lr=1e\\+04"):
        _solve(state)


def _solve_preconditioned(data, lr, max_iter, tol):
    """``solve`` with lr="auto"'s pieces: centred, a dense metric, adaptive rules.

    Returns ``(result, params, problem, state)``.
    """
    penalty = penalty_strengths(1.0, 0.0, data.weight_sum)
    problem = Problem(data, penalty, fit_intercept=True, centred=True)
    params = _params()
    state = SolverState(lr=lr, momentum=0.0, nesterov=False, adaptive=True, lr_max=lr)
    state.preconditioner = problem.measure(params, "dense")
    result = solve(
        params, problem, state, max_iter=max_iter, tol=tol, batch_size=None, generator=None
    )
    return result, params, problem, state


def test_adaptive_mode_recovers_from_a_far_too_long_step():
    """A step 1e4 times too long is rejected and shortened until it lowers the objective."""
    result, _, _, state = _solve_preconditioned(_data(), lr=1e4, max_iter=200, tol=1e-8)
    assert result.converged
    assert state.lr < 1e4
    assert all(b <= a for a, b in zip(result.loss_curve, result.loss_curve[1:], strict=False))


def test_gradient_history_is_recorded():
    state = SolverState(lr=1.0, momentum=0.5, nesterov=False, adaptive=False)
    result, _ = _solve(state, max_iter=50, track_gradients=True)
    h = result.history
    assert set(h) >= {"objective", "grad_norm", "update_norm", "distance_from_init", "coef"}
    assert all(len(v) == result.n_iter for v in h.values())
    assert h["objective"] == result.loss_curve
    assert h["grad_norm"][-1] < h["grad_norm"][0]


# ------------------------------------------------------------- the problem


@pytest.mark.parametrize("sparse", [False, True])
def test_centring_is_an_exact_reparametrisation(sparse):
    """Same objective at the same model; the intercept's Hessian row decouples at zero."""
    data = _data(offset=50.0, sparse=sparse)
    penalty = penalty_strengths(1.0, 0.0, data.weight_sum)
    centred = Problem(data, penalty, fit_intercept=True, centred=True)
    rng = np.random.RandomState(1)
    coef = torch.tensor(rng.randn(1, 6) * 0.01, requires_grad=True)
    b = torch.tensor([0.3], dtype=torch.float64)
    c = b.clone().requires_grad_(True)
    centred.to_solver(coef.detach(), c.detach())
    f_centred = centred.evaluate([coef, c])
    X, y, _ = data.full()
    X = X.to_dense() if sparse else X
    f_plain = objective(coef.detach(), b, X, y, None, penalty, normalizer=data.weight_sum)
    assert float(f_centred) == pytest.approx(float(f_plain), rel=1e-12)
    back = c.detach().clone()
    centred.to_model(coef.detach(), back)
    assert float(back) == pytest.approx(0.3, abs=1e-12)
    P = centred.measure(_params(), "dense")
    assert P.H[-1, :-1].abs().max() < 1e-12 * P.H.diagonal().max()


def test_centred_solve_reaches_the_plain_optimum_on_offset_features():
    data = _data(offset=1e3)
    result, params, problem, _ = _solve_preconditioned(data, lr=1.0, max_iter=100, tol=1e-7)
    assert result.converged and result.n_iter < 30
    penalty = problem.penalty
    problem.to_model(params[0].detach(), params[1].detach())
    X, y, _ = data.full()
    coef = params[0].detach().requires_grad_(True)
    b = params[1].detach().requires_grad_(True)
    objective(coef, b, X, y, None, penalty, normalizer=data.weight_sum).backward()
    # Features near 1e3: the gradient's entries are 1e3 times the decrement's scale.
    assert coef.grad.abs().max() < 1e-5 and b.grad.abs().max() < 1e-7


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 4)])
def test_damped_cholesky_does_not_depend_on_the_units_of_the_coordinates(batch_shape):
    """``P^-1 g`` from the factor of ``D H D`` is ``D^-1`` times the one of ``H`` at
    ``D^-1 g``, with curvatures spanning 24 decades: the damping is per coordinate."""
    from sktorch_lr._curvature import damped_cholesky

    gen = torch.Generator().manual_seed(0)
    s = 8
    A = torch.randn(*batch_shape, s, 2 * s, generator=gen, dtype=torch.float64)
    H = A @ A.transpose(-1, -2) / (2 * s)  # well conditioned
    D = 10.0 ** torch.linspace(-6, 6, s, dtype=torch.float64)
    g = torch.randn(*batch_shape, s, 1, generator=gen, dtype=torch.float64)
    plain = torch.cholesky_solve(g / D[:, None], damped_cholesky(H))
    scaled = torch.cholesky_solve(g, damped_cholesky(H * D[:, None] * D[None, :]))
    assert torch.allclose(scaled * D[:, None], plain, rtol=1e-8, atol=0)
    # An all-zero column (no penalty): its zero curvature counts as 1, no NaN.
    H0 = H.clone()
    H0[..., 0, :] = 0.0
    H0[..., :, 0] = 0.0
    assert torch.isfinite(torch.cholesky_solve(g, damped_cholesky(H0))).all()


def test_damped_cholesky_of_rounding_level_curvature_falls_back_to_the_diagonal():
    """A matrix no damping up to its own diagonal makes definite (rounding: curvatures
    of 1e-17 on separated classes) gets Jacobi's metric, not a ValueError; in a batch,
    only that matrix does."""
    from sktorch_lr._curvature import DAMPING, damped_cholesky

    bad = torch.tensor([[1e-17, 3e-17], [3e-17, 2e-17]], dtype=torch.float64)
    good = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    L = damped_cholesky(torch.stack([bad, good]))
    jacobi = torch.diag(torch.diagonal(bad)) * (1 + DAMPING)
    torch.testing.assert_close(L[0] @ L[0].T, jacobi, rtol=1e-12, atol=0)
    torch.testing.assert_close(L[1] @ L[1].T, good + DAMPING * torch.diag(torch.diagonal(good)))


@pytest.mark.parametrize("seed", range(3))
def test_unscaled_offset_features_without_an_intercept_converge_in_a_few_epochs(seed):
    """Columns 1,000 spreads from zero, scales over six decades, no intercept to centre
    them: the Hessian's diagonal spans twenty decades. Damping relative to its largest
    entry once held every small-scale coordinate back (1,000 epochs, a warning)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from sktorch_lr import TorchLogisticRegression

    from .conftest import objective_value

    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(600, 30))
    y = (Z @ rng.normal(size=30) + rng.logistic(size=600) > 0).astype(int)
    X = (Z + 1000.0 * rng.normal(size=30)) * 10.0 ** rng.uniform(-3, 3, size=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = TorchLogisticRegression(C=100.0, fit_intercept=False).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference stops at float64's rounding
        tight = TorchLogisticRegression(C=100.0, fit_intercept=False, tol=1e-10).fit(X, y)
    assert est.n_iter_ <= 20
    zero = np.zeros(1)
    gap = objective_value(est.coef_, zero, X, y, C=100.0) - objective_value(
        tight.coef_, zero, X, y, C=100.0
    )
    assert gap <= 1e-8


# ---------------------------------------------------------------- the rules


def test_step_control_rejects_shrinks_caps_damps_and_regrows():
    H = torch.eye(3, dtype=torch.float64) * 2.0
    state = SolverState(lr=1.0, momentum=0.5, nesterov=False, adaptive=True, lr_max=1.0)
    state.preconditioner = DensePreconditioner(H, (1, 2), True)
    state.buffers = [torch.ones(2)]
    control = StepControl()
    assert control.accept(1.0, 1.0, 0.0) and not control.accept(1.1, 1.0, 0.05)
    assert not control.accept(math.nan, 1.0, 0.0)
    control.rejected(state, epoch=1)
    assert state.lr == 0.5 and state.lr_max == 0.5 and state.buffers == []
    assert state.preconditioner.levenberg == 0.0  # first rejection: shorten only
    control.rejected(state, epoch=2)
    assert state.lr == 0.25 and state.preconditioner.levenberg == StepControl.DAMP_START
    control.rejected(state, epoch=3)
    assert state.preconditioner.levenberg == pytest.approx(10 * StepControl.DAMP_START)
    assert state.lr == 0.125
    control.accepted(state)
    assert state.lr == 0.125  # no growth back to a step that failed
    state.lr = 0.01
    control.accepted(state)
    assert state.lr == 0.02


def test_step_control_starts_a_fresh_metric_from_twice_the_step_that_worked():
    state = SolverState(lr=1.0, momentum=0.0, nesterov=False, adaptive=True, lr_max=1.0)
    control = StepControl()
    control.accepted(state)
    state.lr = state.lr_max = 1.0  # a fresh metric's rule
    control.measured(state)
    assert state.lr == 1.0  # the full step worked: the rule's step
    control.rejected(state, epoch=1)
    control.rejected(state, epoch=2)
    control.accepted(state)  # at a quarter of the rule's step
    state.lr = state.lr_max = 1.0
    control.measured(state)
    assert state.lr == 0.5 and state.lr_max == 1.0  # twice it, and room to grow back
    control.accepted(state)
    assert state.lr == 1.0
    state.lr = state.lr_max = 0.3  # a later metric whose rule asks for less
    control.measured(state)
    assert state.lr == 0.3


def test_step_control_gives_up_with_a_divergence_error():
    state = SolverState(lr=1.0, momentum=0.0, nesterov=False, adaptive=True)
    control = StepControl()
    with pytest.raises(DivergenceError, match="rose after every step"):
        for epoch in range(StepControl.MAX_HALVINGS + 2):
            control.rejected(state, epoch)


def test_remeasure_schedule():
    cheap = RemeasureSchedule(ratio=1.0)
    assert cheap.min_epochs == 1
    cheap.tick()
    assert cheap.due(progress=0.5) and not cheap.due(progress=0.05)
    costly = RemeasureSchedule(ratio=10.0)
    assert costly.min_epochs == 40  # curvature at most 20% of the time
    for _ in range(39):
        costly.tick()
    assert not costly.due(0.9)
    costly.tick()
    assert costly.due(0.9)
    costly.measured()
    assert not costly.due(0.9)


def test_stall_stop_needs_patience_epochs_without_progress():
    stall = StallStop()
    assert not stall.update(0.9, 1.0, 1e-3, noise=1e-12)  # the objective fell
    stops = [stall.update(0.9, 0.9, 1e-3, noise=1e-12) for _ in range(StallStop.PATIENCE)]
    assert stops[-1] and not any(stops[:-1])
    stall = StallStop()
    for k in range(3 * StallStop.PATIENCE):  # the decrement keeps halving: progress
        assert not stall.update(0.9, 0.9, 0.4**k, noise=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_spectrum_estimate_inverts_the_heavy_ball_rate(momentum):
    """A decrement contracting by rho per epoch reveals the flattest curvature h."""
    lr, h_true = 0.9, 0.01
    rho = heavy_ball_radius(lr, momentum, h_true)
    state = SolverState(lr=lr, momentum=momentum, nesterov=False, adaptive=True)
    estimate = SpectrumEstimate()
    found = None
    for k in range(SpectrumEstimate.WINDOW + 1):
        found = estimate.observe(rho**k, state, low=0.5)
    assert found == pytest.approx(h_true, rel=1e-6)
    estimate = SpectrumEstimate()
    for k in range(SpectrumEstimate.WINDOW + 1):  # fast enough: nothing to learn
        assert estimate.observe(0.1**k, state, low=0.5) is None


def test_batch_growth_after_three_stalls():
    growth = BatchGrowth()
    assert not growth.grow(1.0, 0.0)
    assert [growth.grow(1.0, 0.0) for _ in range(3)] == [False, False, True]
    assert not growth.grow(0.5, 0.0)


def test_batch_growth_after_three_creeping_epochs():
    # A new best every epoch, but the decrement shrinking by 2%: creeping.
    growth = BatchGrowth()
    assert not growth.grow(1.0, 0.0, progress=0.3)
    creeping = [growth.grow(1.0 - 0.01 * k, 0.0, progress=0.98) for k in range(1, 4)]
    assert creeping == [False, False, True]
    # A fall by a fifth or more is progress; one epoch of it restarts the count.
    assert [growth.grow(0.9 - 0.01 * k, 0.0, progress=0.98) for k in range(2)] == [False, False]
    assert not growth.grow(0.5, 0.0, progress=0.8)
    assert [growth.grow(0.5 - 0.01 * k, 0.0, progress=0.9) for k in range(1, 4)][-1]


def _centred_problem(rng, X, n_classes, sparse):
    """A weighted, penalised problem on ``X`` in the solver's centred parametrisation,
    keeping its logits; and ``along(params, v)``: ``J(params + t v)`` as a function of ``t``."""
    n = X.shape[0]
    y = rng.randint(0, n_classes, n)
    sw = rng.uniform(0.2, 3.0, n)
    data = TrainingData(
        sp.csr_matrix(X) if sparse else X,
        y,
        sw,
        binary=n_classes == 2,
        device=torch.device("cpu"),
        dtype=torch.float64,
    )
    penalty = penalty_strengths(0.3, 0.0, data.weight_sum)
    problem = Problem(data, penalty, fit_intercept=True, centred=True)
    problem.keep_logits = True

    def along(params, v):
        def J(t):
            coef = params[0].detach() + t * v[0]
            c = params[1].detach() + t * v[1]
            X_, y_, sw_ = data.full()
            X_ = X_.to_dense() if sparse else X_
            intercept = problem.model_intercept(coef, c)
            return objective(coef, intercept, X_, y_, sw_, penalty, normalizer=data.weight_sum)

        return J

    return problem, along


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_curvature_along_is_the_centred_objectives_second_derivative(sparse, n_classes):
    """``v^T H v`` from one product ``X v``, in the solver's parametrisation."""
    rng = np.random.RandomState(3)
    X = rng.randn(70, 5) * [1, 10, 0.1, 3, 1] + [4, -3, 0, 50, 1]
    problem, along = _centred_problem(rng, X, n_classes, sparse)
    K = 1 if n_classes == 2 else n_classes
    params = [
        torch.tensor(rng.randn(K, 5) * 0.1, requires_grad=True),
        torch.tensor(rng.randn(K) * 0.1, requires_grad=True),
    ]
    problem.evaluate(params)
    v = [torch.tensor(rng.randn(K, 5)), torch.tensor(rng.randn(K))]
    t0 = torch.zeros((), dtype=torch.float64)
    expected = torch.autograd.functional.hessian(along(params, v), t0)
    assert problem.curvature_along(params, v) == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_line_minimum_is_the_objectives_minimum_along_the_direction(sparse, n_classes):
    """Offset, unequal columns, weights, a penalty: against a dense scan of ``J``."""
    rng = np.random.RandomState(5)
    X = rng.randn(80, 4) * [1, 10, 0.1, 3] + [4, -3, 0, 50]
    problem, along = _centred_problem(rng, X, n_classes, sparse)
    K = 1 if n_classes == 2 else n_classes
    params = [torch.zeros(K, 4, requires_grad=True), torch.zeros(K, requires_grad=True)]
    params = [p.double().detach().requires_grad_(True) for p in params]
    problem.evaluate(params)
    # A descent direction far from the optimum: the gradient scaled per coordinate.
    g = [p.grad.detach().clone() for p in params]
    d = [g[0] / (g[0].abs().max() + 1e-12), g[1] / (g[1].abs().max() + 1e-12)]
    slope0 = float(sum((a * b).sum() for a, b in zip(g, d, strict=True)))
    assert slope0 > 0
    t = problem.line_minimum(params, d, slope0)
    backwards = along(params, [-d[0], -d[1]])

    def J(step):
        return float(backwards(step))

    scan = np.linspace(0.0, 4.0 * max(t, 1.0), 4001)
    values = [J(s) for s in scan]
    best = scan[int(np.argmin(values))]
    # Close to the minimum (the search stops at a tenth of the starting slope) and far
    # below the start.
    assert J(t) - min(values) <= 0.02 * (J(0.0) - min(values))
    assert abs(t - best) <= 0.35 * best


def test_line_search_cuts_newtons_epochs_far_from_the_optimum(monkeypatch):
    """The lesson's data: Newton's full steps fall short while the curvature shrinks."""
    from sktorch_lr import TorchLogisticRegression
    from sktorch_lr._solver import LineSearch
    from sktorch_lr.datasets import make_lesson_data

    X, y = make_lesson_data()
    searched = [TorchLogisticRegression(C=C).fit(X, y) for C in (1.0, 1e4)]
    monkeypatch.setattr(LineSearch, "MIN_DECREMENT", math.inf)
    plain = [TorchLogisticRegression(C=C).fit(X, y) for C in (1.0, 1e4)]
    for a, b, C in zip(searched, plain, (1.0, 1e4), strict=True):
        assert a.n_iter_ <= b.n_iter_ - 3, (C, a.n_iter_, b.n_iter_)

        def J(model, C=C):  # scikit-learn's objective divided by C, per sample
            p = model.predict_proba(X)[np.arange(len(y)), np.asarray(y, dtype=int)]
            return -np.log(p).mean() + (model.coef_.astype(float) ** 2).sum() / (2 * C * len(y))

        optimum = J(TorchLogisticRegression(C=C, tol=1e-10).fit(X, y))
        assert J(a) - optimum < 1e-6 and J(b) - optimum < 1e-6


def test_conjugate_step_is_preconditioned_conjugate_gradients_on_a_quadratic():
    """On ``1/2 x^T A x - b^T x`` with a fixed metric, SGD's arithmetic with these
    momenta and step lengths is PCG: exact in at most ``n`` steps."""
    rng = np.random.RandomState(0)
    n = 6
    Q = np.linalg.qr(rng.randn(n, n))[0]
    A = torch.tensor(Q @ np.diag(np.logspace(0, 5, n)) @ Q.T)
    b = torch.tensor(rng.randn(n))
    P = torch.diag(A.diagonal())  # Jacobi: the condition number stays large

    class Quadratic:
        def curvature_along(self, params, v):
            return float(v[0] @ A @ v[0])

    x = torch.zeros(n, requires_grad=True)
    x.data = x.data.double()
    state = SolverState(lr=1.0, momentum=0.0, nesterov=False, adaptive=True, low=1.0)
    rule = ConjugateStep()
    rule.metric = state.preconditioner = object()  # one metric throughout
    for _ in range(n):
        g = A @ x.detach() - b
        x.grad = g
        d = [torch.linalg.solve(P, g)]
        rule.choose_(([x]), state, Quadratic(), d, halvings=0)
        momentum_step_([_with_grad(x, d[0])], state)
        if not state.buffers:
            state.buffers = [d[0].clone()]
    x_star = torch.linalg.solve(A, b)
    assert (x.detach() - x_star).norm() < 1e-6 * x_star.norm()


def _with_grad(x, g):
    x.grad = g
    return x


def test_conjugate_step_momentum_and_step_length_rules():
    rule = ConjugateStep()
    g = [torch.tensor([1.0, 2.0])]
    assert rule.momentum(g, [torch.tensor([0.5, 1.0])]) == 0.0  # nothing before: restart
    # Polak-Ribiere: g^T (d - d_prev) / (g_prev^T d_prev) = (0.5 + 2 - 2.5) / 2.5 = 0
    assert rule.momentum(g, [torch.tensor([0.5, 1.0])]) == 0.0
    beta = rule.momentum([torch.tensor([1.0, 1.0])], [torch.tensor([2.0, 2.0])])
    assert beta == pytest.approx((4.0 - 1.5) / 2.5)
    # Negative: clipped to zero (PR+).
    assert rule.momentum([torch.tensor([1.0, 1.0])], [torch.tensor([0.1, 0.1])]) == 0.0
    rule.restart()
    assert rule.momentum(g, [torch.tensor([1.0, 1.0])]) == 0.0
    assert ConjugateStep.lr(2.0, 4.0) == 0.5
    assert ConjugateStep.lr(-1.0, 4.0) is None  # not a descent direction
    assert ConjugateStep.lr(1.0, 0.0) is None  # no curvature along it
    state = SolverState(lr=1.0, momentum="auto", nesterov=False, adaptive=True, low=0.5)
    assert ConjugateStep.applies(state, "block", 10)
    assert not ConjugateStep.applies(state, "dense", 10)
    assert not ConjugateStep.applies(state, "block", ConjugateStep.MAX_CLASSES + 1)
    state.low = None  # a given momentum, or mini-batches
    assert not ConjugateStep.applies(state, "block", 10)


def test_conjugate_steps_need_fewer_epochs_than_heavy_ball_on_digits(monkeypatch):
    """Raw digits, 10 classes: the block metric's case (epochs are deterministic)."""
    from sklearn.datasets import load_digits

    from sktorch_lr import TorchLogisticRegression

    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    conjugate = TorchLogisticRegression(C=10.0).fit(X, y)
    monkeypatch.setattr(ConjugateStep, "KINDS", ())
    heavy_ball = TorchLogisticRegression(C=10.0).fit(X, y)
    assert conjugate.n_iter_ < 0.8 * heavy_ball.n_iter_

    def J(model):  # scikit-learn's objective divided by C, per sample
        loss = -np.log(model.predict_proba(X)[np.arange(len(y)), y]).mean()
        return loss + (model.coef_**2).sum() / (2 * 10.0 * len(y))

    optimum = J(TorchLogisticRegression(C=10.0, tol=1e-10, max_iter=5000).fit(X, y))
    assert 0 <= J(conjugate) - optimum < 1e-6
    assert 0 <= J(heavy_ball) - optimum < 1e-6


# ------------------------------------------- float32 sums and the shared shift


def _offset_problem(seed=0, n=2500, d=60, n_classes=3, offset=10.0):
    """Features 10 times as far from zero as their spread, scales over six decades."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d))
    logits = Z @ rng.normal(size=(d, n_classes))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(n_classes, p=row) for row in p])
    X = (Z + offset * rng.normal(size=d)) * 10.0 ** rng.uniform(-3, 3, size=d)
    return X, y


def test_float64_sums_are_the_float64_gradient_to_float32_rounding():
    X, y = _offset_problem(n=2500, d=20)
    X = X.astype(np.float32).astype(np.float64)  # the same numbers in both dtypes
    # Entries on the standardised scale: a coefficient's gradient grows with its column.
    scale = torch.as_tensor(np.r_[np.tile(1.0 / X.std(0), 3), np.ones(3)])
    mean = torch.as_tensor(X.mean(0), dtype=torch.float32).double()

    def gradient(dtype, refine):
        data = TrainingData(X, y, None, binary=False, device=torch.device("cpu"), dtype=dtype)
        penalty = penalty_strengths(1.0, 0.0, data.weight_sum)
        problem = Problem(data, penalty, fit_intercept=True, centred=True)
        problem.mean = mean.to(dtype)  # the same shift in both dtypes
        if refine:
            assert problem.refine_precision()  # switches once
            assert not problem.refine_precision()
        elif dtype == torch.float64:
            assert not problem.refine_precision()  # already sums in float64
        coef = torch.full((3, 20), 1e-3, dtype=dtype, requires_grad=True)
        c = torch.zeros(3, dtype=dtype, requires_grad=True)
        problem.evaluate([coef, c])
        assert coef.grad.dtype == dtype
        return torch.cat([coef.grad.ravel(), c.grad]).double() * scale

    exact = gradient(torch.float64, False)
    err_plain = (gradient(torch.float32, False) - exact).abs().max()
    err_refined = (gradient(torch.float32, True) - exact).abs().max()
    assert err_refined <= 1e-6 * exact.abs().max()
    assert err_refined < 0.1 * err_plain


@pytest.mark.parametrize("refine", [True, False], ids=["float64 sums", "float32 sums"])
def test_float32_fit_goes_on_with_float64_sums_where_its_own_rounding_stalls_it(
    refine, monkeypatch
):
    """Columns 3,000 times as far from zero as their spread: float32's sums stall the
    fit above tol (decrement about 1e-3), float64 sums take it on to tol."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from sktorch_lr import TorchLogisticRegression

    from .conftest import objective_value

    X, y = _offset_problem(n=600, d=60, n_classes=3, offset=3000.0)
    C = 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float64 too stops at its own rounding
        reference = TorchLogisticRegression(C=C, tol=1e-8).fit(X, y)
    optimum = objective_value(reference.coef_, reference.intercept_, X, y, C=C)
    if not refine:
        monkeypatch.setattr(Problem, "refine_precision", lambda self: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = TorchLogisticRegression(C=C).fit(X.astype(np.float32), y)
    gap = objective_value(est.coef_, est.intercept_, X, y, C=C) - optimum
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if refine:
        assert not warned and gap < 1e-6
    else:  # the control: what the float64 sums fix (a stall above tol, 2e-7 to 8e-5 in J)
        assert warned and gap > 1e-7


@pytest.mark.parametrize("kind", ["block", "dense"])
def test_penalised_multinomial_steps_keep_the_classes_mean_at_zero(kind, monkeypatch):
    """Near-constant columns, no intercept: the shared shift's only curvature is the
    penalty's, which the per-class blocks do not see; projected steps never go there."""
    import sktorch_lr._curvature as curvature
    from sktorch_lr import TorchLogisticRegression

    monkeypatch.setattr(curvature, "MAX_DENSE_MULTINOMIAL_PARAMS", 10**6 if kind == "dense" else 0)
    X, y = _offset_problem(seed=37, n=30, d=60, n_classes=5, offset=3000.0)
    common = dict(C=0.01, fit_intercept=False)
    est = TorchLogisticRegression(**common).fit(X, y)
    assert est.n_iter_ < 150  # 870 epochs when the block metric's steps drifted there
    assert np.abs(est.coef_.mean(0)).max() <= 1e-12 * np.abs(est.coef_).max()
    # A warm start off that subspace is brought back to it (exact: it only lowers J).
    est.coef_ = est.coef_ + 1e-3 / X.std(0)
    est.set_params(warm_start=True, max_iter=1, tol=0.0)
    est.fit(X, y)
    assert np.abs(est.coef_.mean(0)).max() <= 1e-12 * np.abs(est.coef_).max()
