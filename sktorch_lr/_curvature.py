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

from ._objective import data_term, linear_logits, objective

# Largest parameter count whose Hessian is built densely (P Hessian-vector
# products) for lr="auto"; above it the largest eigenvalue comes from power
# iteration, whose ~20 products cost less than the training steps they tune.
DENSE_HESSIAN_MAX_PARAMS = 256
LOOPED_HESSIAN_MAX_PARAMS = 8
# Eigenvalues below this fraction of the largest are treated as exact zeros.
NULL_EIGENVALUE = 1e-10
# Eigenvalues within this relative margin of the L2 strength are the penalty's
# alone (directions the data leave flat).
PENALTY_ONLY_MARGIN = 1e-3
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
    """The dense Hessian of ``f`` at ``theta``: the Jacobian of its autograd gradient.

    One ``create_graph`` gradient, then its Jacobian: row by row for up to
    :data:`LOOPED_HESSIAN_MAX_PARAMS` parameters, else in one batched backward
    (``is_grads_batched=True``, which runs on ``vmap``; its first use in a
    process costs ~0.3 s of imports that the smallest problems do not pay).
    """
    theta = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(theta), theta, create_graph=True)
    n = theta.numel()
    if n > LOOPED_HESSIAN_MAX_PARAMS:
        eye = torch.eye(n, dtype=theta.dtype, device=theta.device)
        (H,) = torch.autograd.grad(g, theta, eye, is_grads_batched=True)
        return H
    rows = []
    for j in range(n):
        (row,) = torch.autograd.grad(g[j], theta, retain_graph=True)
        rows.append(row)
    return torch.stack(rows)


def logit_curvature(logits, y, sample_weight, normalizer):
    """Per-sample Hessians of the data term with respect to the logits, by autograd.

    Returns ``A`` of shape ``(n, K, K)`` (``K = 1`` for the binary model),
    ``A_i = d^2 (s_i loss_i / normalizer) / dz_i^2``, and the first
    derivatives ``(n, K)``. Each sample's loss depends
    on its own logits only, so one double backward per logit column gives all
    of them: ``K`` backward passes, whatever the number of parameters.
    """
    z = logits.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(data_term(z, y, sample_weight, normalizer), z, create_graph=True)
    K = z.shape[1]
    rows = []
    for k in range(K):
        (row,) = torch.autograd.grad(g[:, k].sum(), z, retain_graph=k < K - 1)
        rows.append(row)
    return torch.stack(rows, dim=1), g.detach()


def linear_model_hessian(X, A, l2, fit_intercept):
    """``sum_i A_i (x) [x_i, 1][x_i, 1]^T`` plus ``l2`` on the coefficients.

    The Hessian of a loss of ``z = X W^T + b`` through the linear layer, with
    rows and columns in the order ``coef.ravel()`` then ``intercept``.
    """
    n, d = X.shape
    K = A.shape[1]
    if K == 1:
        # Blockwise, without the augmented copy of X: [[X'DX, X'D1], [1'DX, 1'D1]].
        XD = X * A[:, 0, 0, None]
        H = X.new_empty((d + fit_intercept, d + fit_intercept))
        H[:d, :d] = X.T @ XD
        if fit_intercept:
            H[:d, d] = H[d, :d] = XD.sum(0)
            H[d, d] = A[:, 0, 0].sum()
    else:
        ones = torch.ones(n, 1, dtype=X.dtype, device=X.device)
        Xa = torch.cat([X, ones], 1) if fit_intercept else X
        m = Xa.shape[1]
        H = torch.einsum("ikl,ij,im->kjlm", A, Xa, Xa).reshape(K * m, K * m)
        idx = torch.arange(K * m, device=X.device).reshape(K, m)
        order = idx[:, :d].reshape(-1)
        if fit_intercept:
            order = torch.cat([order, idx[:, d]])
        H = H[order][:, order]
    n_coef = K * d
    H[:n_coef, :n_coef] += l2 * torch.eye(n_coef, dtype=H.dtype, device=H.device)
    return H


def model_hessian(X, y, sample_weight, penalty, normalizer, coef, intercept):
    """The Hessian and gradient of the smooth objective at ``(coef, intercept)``.

    The loss's curvature with respect to the logits comes from autograd
    (:func:`logit_curvature`), the chain through ``nn.Linear`` from
    :func:`linear_model_hessian`: ``K`` backward passes and one matrix product
    instead of one Hessian-vector product per parameter. Tests check it
    against :func:`autograd_hessian`.
    """
    with torch.no_grad():
        logits = linear_logits(X, coef, intercept)
    A, g_logits = logit_curvature(logits, y, sample_weight, normalizer)
    H = linear_model_hessian(X, A, penalty.l2, intercept is not None)
    grad = g_logits.T @ X + penalty.l2 * coef
    if intercept is not None:
        grad = torch.cat([grad.reshape(-1), g_logits.sum(0)])
    return H, grad.reshape(-1)


class Curvature(NamedTuple):
    """Extreme eigenvalues of the Hessian of the smooth objective."""

    L: float  # largest eigenvalue
    mu: float  # smallest eigenvalue (a lower bound when ``exact`` is False)
    exact: bool  # True when both come from the dense Hessian's spectrum


def spectrum_extremes(H, mu_floor=0.0, l2=0.0):
    """:class:`Curvature` from a dense Hessian's eigenvalues (``torch.linalg.eigvalsh``).

    ``mu`` skips the directions that cannot slow momentum SGD down because no
    gradient ever points along them: those of (numerically) zero curvature --
    the softmax's shared shift, features that are linear combinations of
    others when there is no penalty -- below ``NULL_EIGENVALUE * L``, and those
    whose curvature is the L2 penalty's ``l2`` alone (the same redundant
    features with a penalty): the data's gradients lie in the span of its rows,
    which these directions are orthogonal to.
    """
    eig = torch.linalg.eigvalsh(H)
    L = float(eig[-1])
    penalty_only = (eig - l2).abs() <= PENALTY_ONLY_MARGIN * l2
    curved = eig[(eig > NULL_EIGENVALUE * L) & ~penalty_only]
    mu = float(curved[0]) if curved.numel() else L
    return Curvature(L, max(mu, mu_floor), True)


def extreme_eigenvalues(f, theta, mu_floor=0.0, l2=0.0, power_iterations=50):
    """Largest and smallest Hessian eigenvalues of ``f`` at ``theta``.

    Up to :data:`DENSE_HESSIAN_MAX_PARAMS` parameters the Hessian is built
    with autograd and its spectrum taken with ``torch.linalg.eigvalsh``
    (float64). Above that (where ``P`` products cost more than the training
    steps they tune), ``L`` comes from power iteration on Hessian-vector
    products and ``mu`` is ``mu_floor``, a guaranteed lower bound; the
    resulting high momentum is kept in check by the solver's restarts.
    """
    theta = theta.detach().to(torch.float64)
    if theta.numel() <= DENSE_HESSIAN_MAX_PARAMS:
        return spectrum_extremes(autograd_hessian(f, theta), mu_floor, l2)
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
