"""Curvature of the objective, measured with autograd, and the step sizes it implies.

``lr="auto"`` and :meth:`sktorch_lr.inspection.GradientInspector.recommend_hyperparameters`
both come here, so the training default and the inspection report are the same
numbers.

The parameters are handled as one flat vector ``theta = [coef.ravel(), intercept]``,
the order :mod:`sktorch_lr.inspection` reports them in.
"""

import math
from typing import NamedTuple

import torch

from ._objective import objective

# Largest parameter count whose Hessian is built densely (P Hessian-vector
# products); above it the largest eigenvalue comes from power iteration.
DENSE_HESSIAN_MAX_PARAMS = 1024
LOOPED_HESSIAN_MAX_PARAMS = 128
# Eigenvalues below this fraction of the largest are treated as exact zeros.
NULL_EIGENVALUE = 1e-10
# Largest condition number the step-size rules trust: a flat direction (C=inf
# and collinear features) would otherwise ask for momentum 1.
MAX_CONDITION = 1e6


def split_theta(theta, n_outputs, n_features, fit_intercept):
    """Views ``(coef, intercept)`` of a flat parameter vector."""
    n_coef = n_outputs * n_features
    coef = theta[:n_coef].reshape(n_outputs, n_features)
    intercept = theta[n_coef:] if fit_intercept else None
    return coef, intercept


def flatten_params(coef, intercept):
    """``[coef.ravel(), intercept]`` as one detached vector."""
    parts = [coef.detach().reshape(-1)]
    if intercept is not None:
        parts.append(intercept.detach().reshape(-1))
    return torch.cat(parts)


def smooth_objective_of_theta(X, y, sample_weight, penalty, normalizer, n_outputs, fit_intercept):
    """``theta -> J_smooth(theta)``: the objective without its L1 part, for autograd."""
    n_features = X.shape[1]

    def f(theta):
        coef, intercept = split_theta(theta, n_outputs, n_features, fit_intercept)
        return objective(
            coef, intercept, X, y, sample_weight, penalty, normalizer=normalizer, include_l1=False
        )

    return f


def hessian_vector_product(f, theta, v):
    """``H(theta) @ v`` by double backward (Pearlmutter's trick)."""
    theta = theta.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(theta), theta, create_graph=True)
    (hv,) = torch.autograd.grad(g, theta, grad_outputs=v)
    return hv


def autograd_hessian(f, theta):
    """The dense Hessian of ``f`` at ``theta``, one row per Hessian-vector product.

    Up to :data:`LOOPED_HESSIAN_MAX_PARAMS` parameters the rows are taken one
    by one from a single ``create_graph`` gradient; above, they are batched with
    ``vmap`` (``vectorize=True``), whose first use in a process costs ~0.3 s of
    imports that small problems should not pay.
    """
    theta = theta.detach()
    if theta.numel() > LOOPED_HESSIAN_MAX_PARAMS:
        return torch.autograd.functional.hessian(f, theta, vectorize=True)
    theta = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(theta), theta, create_graph=True)
    rows = []
    for j in range(theta.numel()):
        (row,) = torch.autograd.grad(g[j], theta, retain_graph=True)
        rows.append(row)
    return torch.stack(rows)


class Curvature(NamedTuple):
    """Extreme eigenvalues of the Hessian of the smooth objective."""

    L: float  # largest eigenvalue
    mu: float  # smallest eigenvalue (a lower bound when ``exact`` is False)
    exact: bool  # True when both come from the dense Hessian's spectrum


def extreme_eigenvalues(f, theta, mu_floor=0.0, power_iterations=50):
    """Largest and smallest Hessian eigenvalues of ``f`` at ``theta``.

    Up to :data:`LOOPED_HESSIAN_MAX_PARAMS` parameters the Hessian is built
    with autograd and its spectrum taken with ``torch.linalg.eigvalsh``
    (float64). Above that (where ``P`` products cost more than the training
    steps they tune), ``L`` comes from power iteration on Hessian-vector
    products and ``mu`` is ``mu_floor``, a guaranteed lower bound; the
    resulting high momentum is kept in check by the solver's restarts.
    """
    theta = theta.detach().to(torch.float64)
    if theta.numel() <= LOOPED_HESSIAN_MAX_PARAMS:
        eig = torch.linalg.eigvalsh(autograd_hessian(f, theta))
        L = float(eig[-1])
        # Directions of (numerically) zero curvature -- the softmax's shared
        # shift, features that are linear combinations of others -- carry no
        # gradient, so they do not limit the convergence: skip them.
        curved = eig[eig > NULL_EIGENVALUE * L]
        mu = float(curved[0]) if curved.numel() else L
        return Curvature(L, max(mu, mu_floor), True)
    gen = torch.Generator(device=theta.device).manual_seed(0)
    v = torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device)
    v /= v.norm()
    L = 0.0
    for _ in range(power_iterations):
        hv = hessian_vector_product(f, theta, v)
        L_new = float(v @ hv)
        v = hv / hv.norm().clamp_min(1e-300)
        if abs(L_new - L) <= 1e-3 * abs(L_new):
            L = L_new
            break
        L = L_new
    return Curvature(L, mu_floor, False)


class StepRule(NamedTuple):
    """Momentum-SGD hyper-parameters derived from the curvature."""

    lr: float
    momentum: float
    rate: float  # predicted contraction of the error per step (quadratic model)
    L: float
    mu: float
    condition_number: float


def _condition(L, mu):
    mu = max(mu, L / MAX_CONDITION)
    return mu, L / mu


def heavy_ball_rule(L, mu):
    """Polyak's heavy-ball optimum for a quadratic with eigenvalues in ``[mu, L]``.

    ``lr = 4 / (sqrt(L) + sqrt(mu))**2`` and
    ``momentum = ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))**2``; the error then
    contracts by ``sqrt(momentum) = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)`` per
    step, against ``(kappa - 1) / (kappa + 1)`` for gradient descent.
    """
    mu, kappa = _condition(L, mu)
    root = math.sqrt(kappa)
    rate = (root - 1.0) / (root + 1.0)
    return StepRule(4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2, rate**2, rate, L, mu, kappa)


def robust_heavy_ball_rule(L, mu):
    """Heavy ball with ``lr = 1 / L`` and ``momentum = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)``."""
    mu, kappa = _condition(L, mu)
    root = math.sqrt(kappa)
    momentum = (root - 1.0) / (root + 1.0)
    lr = 1.0 / L
    rate = max(heavy_ball_radius(lr, momentum, h) for h in (mu, L))
    return StepRule(lr, momentum, rate, L, mu, kappa)


def nesterov_rule(L, mu):
    """Nesterov's constant-momentum choice for a ``mu``-strongly convex, ``L``-smooth objective.

    ``lr = 1 / L`` and ``momentum = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)``.
    """
    mu, kappa = _condition(L, mu)
    root = math.sqrt(kappa)
    momentum = (root - 1.0) / (root + 1.0)
    return StepRule(1.0 / L, momentum, 1.0 - 1.0 / root, L, mu, kappa)


def lr_for_momentum(L, mu, momentum):
    """A step size for a momentum the user fixed: ``(1 + momentum) / L``.

    Half of heavy ball's stability limit ``2 (1 + momentum) / L`` on the
    stiffest direction; for ``momentum=0`` it is gradient descent's ``1/L``.
    """
    mu, kappa = _condition(L, mu)
    lr = (1.0 + momentum) / L
    rate = max(heavy_ball_radius(lr, momentum, h) for h in (mu, L))
    return StepRule(lr, momentum, rate, L, mu, kappa)


def heavy_ball_radius(lr, momentum, h):
    """Per-step contraction of heavy ball on a direction of curvature ``h``.

    The largest root modulus of ``z**2 - (1 + momentum - lr * h) z + momentum``.
    """
    b = 1.0 + momentum - lr * h
    disc = b * b - 4.0 * momentum
    if disc <= 0:
        return math.sqrt(momentum)
    return (abs(b) + math.sqrt(disc)) / 2.0
