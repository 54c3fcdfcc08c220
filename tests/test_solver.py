"""The momentum step is torch.optim.SGD's; the prox step gives exact zeros; divergence is caught."""

import numpy as np
import pytest
import torch

from sktorch_lr._data import TrainingData
from sktorch_lr._objective import penalty_strengths
from sktorch_lr._solver import DivergenceError, SolverState, momentum_step_, solve


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


def _problem(n=200, d=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    y = (X[:, 0] + 0.5 * rng.randn(n) > 0).astype(np.float64)
    return TrainingData(X, y, None, binary=True, device=torch.device("cpu"), dtype=torch.float64)


def _solve(state, penalty=None, **kw):
    """``solve`` on the default problem from zero parameters, full batch: (result, params)."""
    data = _problem()
    penalty = penalty or penalty_strengths(1.0, 0.0, data.weight_sum)
    params = _params()
    kw = {"max_iter": 1000, "tol": 1e-6, **kw}
    result = solve(
        params,
        data,
        penalty,
        state,
        fit_intercept=True,
        batch_size=None,
        generator=torch.Generator(),
        **kw,
    )
    return result, params


def _params(d=6):
    return [
        torch.zeros(1, d, dtype=torch.float64, requires_grad=True),
        torch.zeros(1, dtype=torch.float64, requires_grad=True),
    ]


def test_proximal_step_gives_exact_zeros():
    penalty = penalty_strengths(0.1, 1.0, _problem().weight_sum)
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


def test_adaptive_mode_recovers_from_a_far_too_long_step():
    state = SolverState(lr=1e4, momentum=0.9, nesterov=False, adaptive=True)
    result, _ = _solve(state)
    assert result.converged
    assert state.lr < 1e4


def test_gradient_history_is_recorded():
    state = SolverState(lr=1.0, momentum=0.5, nesterov=False, adaptive=False)
    result, _ = _solve(state, max_iter=50, track_gradients=True)
    h = result.history
    assert set(h) >= {"objective", "grad_norm", "update_norm", "distance_from_init", "coef"}
    assert all(len(v) == result.n_iter for v in h.values())
    assert h["objective"] == result.loss_curve
    assert h["grad_norm"][-1] < h["grad_norm"][0]
