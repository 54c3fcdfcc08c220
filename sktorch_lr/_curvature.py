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
from ._threads import threads_for_factors

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
    # (g . v) differentiated, rather than grad_outputs=v: the same product, without
    # the import of torch's symbolic-shape machinery (sympy, which registers a
    # warnings filter) that grad_outputs triggers on first use.
    (hv,) = torch.autograd.grad((g * v).sum(), theta)
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


def link_jacobian(logits, sample_weight, normalizer, diagonal=False):
    """The data term's logit Hessians as autograd's Jacobian of the model's link.

    The cross-entropy's gradient in the logits is ``s_i (p_i - y_i) / normalizer``
    with ``p = sigmoid(z)`` or ``softmax(z)`` (the canonical link), so its
    Hessian is the Jacobian of ``p`` itself: one backward through the link per
    class, where :func:`logit_curvature` differentiates the loss twice (three
    times the cost on breast cancer, four on digits). Returns ``A`` of shape
    ``(n, K, K)`` as :func:`logit_curvature` does, or with ``diagonal=True``
    the diagonals ``(n, K)``; the tests check that the two agree.
    """
    # Classes along the first dimension: torch's softmax over a short last
    # dimension is several times slower than over the first.
    zt = logits.detach().T.contiguous().requires_grad_(True)
    K = zt.shape[0]
    p = torch.sigmoid(zt) if K == 1 else torch.softmax(zt, dim=0)
    rows = []
    for k in range(K):
        # Each p[k, i] depends on sample i's logits only: the gradient of the sum is
        # the Jacobian's rows (not grad_outputs=ones: see hessian_vector_product).
        (row,) = torch.autograd.grad(p[k].sum(), zt, retain_graph=k < K - 1)
        rows.append(row[k] if diagonal else row)
    scale = 1.0 / normalizer if sample_weight is None else sample_weight / normalizer
    stacked = torch.stack(rows) * scale  # (K, n) or (K, K, n)
    return (stacked.T if diagonal else stacked.permute(2, 0, 1)).contiguous()


def logit_variance(logits, z):
    """``Var_{p_i}(z_i)`` for each sample (``p_i (1 - p_i) z_i^2`` for the sigmoid), float64.

    ``logits`` and ``z`` of shape ``(..., K)``; the result has the leading shape.
    """
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits[..., 0].to(torch.float64))
        return p * (1.0 - p) * z[..., 0].to(torch.float64).square()
    # Classes along the first dimension: torch's softmax over a short last
    # dimension is several times slower than over the first.
    zt = z.movedim(-1, 0).to(torch.float64).contiguous()
    p = torch.softmax(logits.movedim(-1, 0).to(torch.float64).contiguous(), dim=0)
    pz = p * zt
    return (pz * zt).sum(0) - pz.sum(0).square()


def logit_drift(now, then=None, per_problem=False):
    """``r = max_i (max_k D_ik - min_k D_ik)`` for the logit change ``D = now - then``.

    ``now`` and ``then`` of shape ``(n, K)``, or ``(n, b, K)`` for ``b``
    problems with ``per_problem=True`` (then one ``r`` per problem, a tensor);
    ``then=None``: ``now`` is the change itself.

    For the binary model (one logit column against an implicit 0) that is
    ``max_i |D_i|``. Each sample's probabilities then moved by factors within
    ``[e^-r, e^r]``, so its logit Hessian (a variance under them) is at least
    ``e^-r`` times what it was, and its class-block entries ``p_k (1 - p_k)``
    at least ``e^-2r`` times: see :func:`stale_decrement_bound`.
    """
    delta = now.to(torch.float64)
    if then is not None:
        delta = delta - then.to(torch.float64)
    if delta.shape[-1] == 1:
        per_row = delta[..., 0].abs()
    else:
        per_row = delta.amax(-1) - delta.amin(-1)
    if per_problem:
        return per_row.amax(0)
    return float(per_row.max())


# The largest x with exp(x) finite in float64 (exp(709.78) overflows).
MAX_EXP = 709.0


def stale_decrement_bound(decrement, kind, drift):
    """An upper bound of the decrement in a metric measured afresh, or None.

    ``decrement`` is measured in a metric ``P`` taken where the logits were
    ``drift`` (:func:`logit_drift`) away from now. The data term's Hessian
    now is at least ``e^-drift`` times the one measured (the penalty's part is
    unchanged), so ``g^T H_now^-1 g <= e^drift g^T H^-1 g``: the fresh
    decrement is at most ``e^(drift/2)`` times this one; with the class blocks,
    ``e^drift`` times. Other metrics: None (measure again to know).
    """
    power = {"dense": 0.5, "block": 1.0}.get(kind)
    if power is None:
        return None
    if isinstance(drift, torch.Tensor):
        return decrement * torch.exp(power * drift)
    # Past float64's range (logits that moved by hundreds: separated classes running
    # off) the bound says nothing: math.exp would raise OverflowError.
    return decrement * math.exp(power * drift) if power * drift < MAX_EXP else math.inf


def logit_curvature_along(logits, sample_weight, normalizer, z):
    """``sum_i z_i^T A_i z_i``: the data term's second derivative along logit changes ``z``.

    ``A_i`` is sample ``i``'s logit Hessian (:func:`logit_curvature`), in its
    closed form: ``s_i p_i (1 - p_i) / normalizer`` for the sigmoid,
    ``s_i (diag(p_i) - p_i p_i^T) / normalizer`` for the softmax, so that
    ``z_i^T A_i z_i`` is ``s_i Var_{p_i}(z_i) / normalizer``. With ``z = X v``
    for a direction ``v`` of the parameters, this plus the penalty's
    ``l2 ||v_W||^2`` is ``v^T H v``: the curvature of the objective along
    ``v``, in one matrix product (the tests check it against autograd's
    Hessian-vector product). It needs no labels: the logistic losses'
    curvature does not depend on them.
    """
    per_sample = logit_variance(logits, z)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight.to(torch.float64)
    return per_sample.sum() / normalizer


def linear_model_hvp(X, logits, sample_weight, normalizer, l2, mean=None):
    """``(coef_v, intercept_v) -> H v``: Hessian-vector products of the objective at ``logits``.

    ``logits`` are ``X``'s at the point; ``intercept_v`` is None without an
    intercept, and ``mean`` the centring of the problem's parametrisation
    (the model's intercept is ``c - W mean``). ``v^T H v / 2`` is a quadratic
    in ``v`` (:func:`logit_curvature_along` of the logits' change ``X v``, plus
    the penalty's ``l2 ||v_W||^2 / 2``), so its autograd gradient is ``H v``:
    one product ``X v`` and its backward, where the double backward through
    the loss (:func:`hessian_vector_product`) takes the whole objective's
    graph twice (in a fit of 2,000 x 200,000 sparse rows of 5 classes: 23 ms
    a product against 49). The tests check the two agree.
    """

    def hvp(coef_v, intercept_v=None):
        coef_v = coef_v.detach().requires_grad_(True)
        inputs, bias = [coef_v], None
        if intercept_v is not None:
            intercept_v = intercept_v.detach().requires_grad_(True)
            inputs.append(intercept_v)
            bias = intercept_v if mean is None else intercept_v - coef_v @ mean
        dz = linear_logits(X, coef_v, bias)
        half = 0.5 * logit_curvature_along(logits, sample_weight, normalizer, dz)
        if l2:
            half = half + (0.5 * l2) * coef_v.square().sum()
        return torch.autograd.grad(half, inputs)

    return hvp


def logit_derivatives_along(logits, y, z):
    """Each sample's loss derivatives along logit changes ``z``: ``((p - y)^T z, Var_p(z))``.

    ``logits`` and ``z`` of shape ``(..., K)``, ``y`` of the leading shape
    (0./1. for the binary model, class indices for the softmax); float64
    results of the leading shape, unweighted. The first is ``d loss / dt`` and
    the second ``d^2 loss / dt^2`` at ``logits + t z``, ``t = 0``, in their
    closed forms from one sigmoid or softmax (the tests check both against
    autograd): for :class:`~sktorch_lr._solver.LineSearch`, which takes a few
    per epoch, each a pass over the logits, not over ``X``. (The second is
    :func:`logit_variance`'s, computed from the same ``p``: its reordered sums
    changed the rounding, and at tol=1e-10 three drawn CV problems then
    stalled at float64's floor.)
    """
    logits = logits.to(torch.float64)
    z = z.to(torch.float64)
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits[..., 0])
        zz = z[..., 0]
        return (p - y.to(torch.float64)) * zz, p * (1.0 - p) * zz.square()
    p = torch.softmax(logits, dim=-1)
    pz = (p * z).sum(-1)
    first = pz - z.gather(-1, y[..., None])[..., 0]
    return first, (p * z.square()).sum(-1) - pz.square()


def class_major_order(n_outputs, n_features, fit_intercept, device=None):
    """The flat positions (``coef.ravel()``, then ``intercept``) of the parameters
    taken class by class, each class's coefficients then its intercept."""
    K, d = n_outputs, n_features
    slots = torch.arange(K * d, device=device).reshape(K, d)
    if fit_intercept:
        intercepts = K * d + torch.arange(K, device=device)
        slots = torch.cat([slots, intercepts[:, None]], 1)
    return slots.reshape(-1)


def linear_model_hessian(X, A, l2, fit_intercept):
    """``sum_i A_i (x) [x_i, 1][x_i, 1]^T`` plus ``l2`` on the coefficients.

    The Hessian of a loss of ``z = X W^T + b`` through the linear layer, with
    rows and columns in the order ``coef.ravel()`` then ``intercept``. ``A``
    ``(n, K, K)`` holds each sample's Hessian with respect to its logits, so each
    ``A_i`` is symmetric: only its upper triangle is read.
    """
    n, d = X.shape
    K = A.shape[1]
    if K == 1 and n * (d + 1) <= HESSIAN_BLOCK_NUMBERS:
        # Rows that fit in one cache-sized block: one product of the augmented rows
        # (a handful of kernels: small fits measure their curvature every epoch).
        Xa = _augmented(X, fit_intercept)
        H = Xa.T @ (Xa * A[:, 0])
    elif K == 1:
        # Blockwise, without the augmented copy of X: [[X'DX, X'D1], [1'DX, 1'D1]],
        # a cache-sized block of weighted rows at a time (HESSIAN_BLOCK_NUMBERS),
        # written into one reused buffer (a fresh block each time costs page
        # faults: 200,000 x 50 took 23.7 ms against 21.5 ms).
        a = A[:, 0, 0]
        H = X.new_zeros((d + fit_intercept, d + fit_intercept))
        step = max(1, HESSIAN_BLOCK_NUMBERS // max(d, 1))
        buffer = X.new_empty((min(step, n), d))
        for start in range(0, n, step):
            rows = X[start : start + step]
            XD = buffer[: len(rows)]
            torch.mul(rows, a[start : start + step, None], out=XD)
            H[:d, :d].addmm_(rows.T, XD)
            if fit_intercept:
                H[d, :d] += XD.sum(0)
        if fit_intercept:
            H[:d, d] = H[d, :d]
            H[d, d] = a.sum()
    else:
        Xa = _augmented(X, fit_intercept)
        m = Xa.shape[1]
        # sum_i A_i[k, l] xa_ij xa_iq as one matrix product of the curvatures with the
        # rows' products, in row chunks of at most CHUNK_NUMBERS products. Both are
        # symmetric (A_i[k, l] = A_i[l, k], and each (k, l) block in (j, q)): the
        # upper triangles of each, a quarter of the full products' work (the
        # inference's Hessian of 30,000 x 30 with 10 classes: 138 ms -> 60 ms).
        pair_rows, pair_cols = torch.triu_indices(K, K, device=X.device)
        upper_rows, upper_cols = torch.triu_indices(m, m, device=X.device)
        upper = X.new_zeros(len(pair_rows), len(upper_rows))
        step = max(1, CHUNK_NUMBERS // max(len(upper_rows), len(pair_rows)))
        for start in range(0, n, step):
            pairs = A[start : start + step, pair_rows, pair_cols]
            upper += pairs.T @ upper_products(Xa[start : start + step])
        blocks = X.new_empty(len(pair_rows), m, m)
        blocks[:, upper_rows, upper_cols] = upper
        blocks[:, upper_cols, upper_rows] = upper
        H = X.new_empty(K, K, m, m)
        H[pair_rows, pair_cols] = blocks
        H[pair_cols, pair_rows] = blocks
        H = H.permute(0, 2, 1, 3).reshape(K * m, K * m)
        order = torch.argsort(class_major_order(K, d, fit_intercept, X.device))
        H = H[order][:, order]
    if l2:
        H.diagonal()[: K * d].add_(l2)
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


# ------------------------------------------------------------ preconditioning
#
# lr="auto" runs momentum SGD on the preconditioned gradient ``P^-1 g``. ``P``
# is the measured Hessian of the smooth objective (or its class blocks, or its
# diagonal), in the centred parametrisation the solver works in, so the step
# sees a problem whose curvature is close to 1 in every direction, whatever the
# features' scales, C or the number of classes.

# Rows the curvature is measured on (evenly strided, no random numbers drawn).
CURVATURE_MAX_ROWS = 16_384
# Dense float64 chunks hold at most this many numbers at a time.
CHUNK_NUMBERS = 1 << 22
# linear_model_hessian weighs and multiplies this many numbers of X at a time:
# a block that stays in cache (2 MB in float64), where one weighted copy of all
# of X is written to memory and read back (200,000 x 50: 21 ms against 69 ms).
HESSIAN_BLOCK_NUMBERS = 1 << 18
# The Jacobi diagonal's floor, as a fraction of each coordinate's curvature at
# p = 1/2 (``sum_i s_i x_ij^2 / (4 S)``, the most the logistic loss can have):
# where every row that column j touches is predicted with certainty (raw digits,
# l1_ratio=1, C >= 100: pixels lit in a few confident rows), the measured
# ``P_jj`` falls by ten decades and more, the step ``g_j / P_jj`` jumps off and
# rises, and StepControl's halvings stalled the fit 7e-4 (C=167) and 1.6e-4
# (C=1,292) above the optimum, with a ConvergenceWarning. At 1e-4 those fits
# converge (below 1e-5); a floor of 1e-2 stopped 4e-5 above (the metric too far
# above the curvature, its decrement bounds too little), 1e-6 still stalled.
DIAGONAL_FLOOR = 1e-4
# Largest block (features + intercept) factorised densely; wider models get
# the diagonal (Jacobi) preconditioner.
MAX_BLOCK_SIZE = 1024
# Multinomial models with at most this many parameters get the full Hessian
# (class coupling included); larger ones the per-class blocks.
MAX_DENSE_MULTINOMIAL_PARAMS = 256
# Up to this many classes the logits' curvature comes from autograd (one backward
# through the link per class); above, from the closed form ``p (1 - p)`` that the
# tests check against autograd.
MAX_AUTOGRAD_LOGIT_CLASSES = 16
# Damping added to a factorised Hessian, relative to each coordinate's own
# curvature: it only matters along exact null directions (the softmax's shared
# shift), which the gradient never has.
DAMPING = 1e-10


def logit_curvature_diagonal(logits, sample_weight, normalizer, by_autograd=None):
    """``a[i, k] = d^2 (s_i loss_i / normalizer) / dz_ik^2``, shape ``(n, K)``.

    The diagonal of each sample's logit Hessian (it does not depend on the
    labels). By autograd (:func:`link_jacobian`, one backward per class) up to
    :data:`MAX_AUTOGRAD_LOGIT_CLASSES` classes, else by its closed form
    ``s_i p_ik (1 - p_ik) / normalizer``; ``by_autograd`` forces one or the
    other (the tests check that they agree).
    """
    K = logits.shape[1]
    if by_autograd is None:
        by_autograd = K <= MAX_AUTOGRAD_LOGIT_CLASSES
    if by_autograd:
        return link_jacobian(logits, sample_weight, normalizer, diagonal=True)
    p = torch.softmax(logits, dim=1)
    a = p * (1.0 - p)
    scale = 1.0 / normalizer if sample_weight is None else (sample_weight / normalizer)[:, None]
    return a * scale


def _augmented(X, fit_intercept):
    if not fit_intercept:
        return X
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], 1)


def upper_products(Xa):
    """``x_ij x_il`` for ``j <= l`` of each row: shape ``(n, m (m + 1) / 2)``, the
    columns in :func:`torch.triu_indices`' order.

    One product of contiguous slices per ``j``, written into one output: the
    gather of the index pairs, ``Xa[:, rows] * Xa[:, cols]``, took 13.7 ms on
    2,941 x 51 rows against 2.4 ms (72 ms against 12 on 4,096 x 65).
    """
    n, m = Xa.shape
    out = Xa.new_empty((n, m * (m + 1) // 2))
    k = 0
    for j in range(m):
        width = m - j
        torch.mul(Xa[:, j : j + 1], Xa[:, j:], out=out[:, k : k + width])
        k += width
    return out


def class_blocks(Xa, a):
    """``B[k] = Xa^T diag(a[:, k]) Xa`` for every class ``k``: shape ``(K, m, m)``.

    Fewer classes than columns: a batched product over classes. More (a
    thousand classes of twenty features): one matrix product for all classes,
    of the curvatures ``a`` with the products ``x_ij x_il`` of each row (upper
    triangle only), fifty times faster there. Both in chunks that keep their
    temporaries under :data:`CHUNK_NUMBERS` numbers.
    """
    n, m = Xa.shape
    K = a.shape[1]
    if K <= m:
        # One wide product Xa^T [a_1 * Xa, ..., a_K * Xa] per chunk of rows: 1.2-1.8x
        # faster than K batched (m x n) (n x m) products (digits: 8.4 ms against 12.2
        # on one thread).
        # A cache-sized block of weighted rows at a time, in one reused buffer
        # (as linear_model_hessian).
        step = max(1, HESSIAN_BLOCK_NUMBERS // max(K * m, 1))
        out = Xa.new_zeros(m, K * m)
        buffer = Xa.new_empty((min(step, n), K, m))
        for start in range(0, n, step):
            rows = Xa[start : start + step]
            weighted = buffer[: len(rows)]
            torch.mul(a[start : start + step, :, None], rows[:, None, :], out=weighted)
            out.addmm_(rows.T, weighted.view(len(rows), K * m))
        return out.reshape(m, K, m).transpose(0, 1)
    rows, cols = torch.triu_indices(m, m, device=Xa.device)
    step = max(1, CHUNK_NUMBERS // max(len(rows), 1))
    upper = Xa.new_zeros(K, len(rows))
    for start in range(0, n, step):
        chunk = Xa[start : start + step]
        upper += a[start : start + step].T @ upper_products(chunk)
    blocks = Xa.new_empty(K, m, m)
    blocks[:, rows, cols] = upper
    blocks[:, cols, rows] = upper
    return blocks


class Preconditioner:
    """``P`` with ``direction(grads) = P^-1 grads``, in the parameters' shapes.

    Subclasses hold the measured curvature as a dense matrix (``"dense"``),
    per-class blocks (``"block"``) or a diagonal (``"diagonal"``), work in
    float64, and return tensors in the gradients' dtype from ``direction``.
    With an L1 part the dense one takes the proximal step in its metric
    (``proximal_l1_``) and the diagonal one gives ``inverse_diagonal`` for
    soft-thresholding (see :func:`choose_preconditioner`).
    """

    kind = ""
    # Whether an L1 part takes its prox in this metric (proximal_l1_,
    # free_decrement) rather than by soft-thresholding with inverse_diagonal.
    prox_in_metric = False
    levenberg = 0.0
    base = None  # the undamped preconditioner a damped one came from

    def damped(self, levenberg):
        """``P + levenberg * diag(P)`` (Marquardt's damping), or ``self`` for a diagonal."""
        return self

    def undamped(self):
        """The preconditioner as measured (stopping is judged in its metric)."""
        return self if self.base is None else self.base


def _marquardt(H, levenberg):
    """``H + levenberg * diag(H)`` (over the last two dimensions).

    ``levenberg`` is a number, or a tensor that broadcasts against ``H`` (one
    damping per block of a batch).
    """
    if not isinstance(levenberg, torch.Tensor) and not levenberg:
        return H
    return H + levenberg * torch.diag_embed(torch.diagonal(H, dim1=-2, dim2=-1))


def jacobi_scaled(H):
    """``(D^-1/2 H D^-1/2, D^-1/2's diagonal)`` for ``H`` of shape ``(..., s, s)``.

    The scaled matrix has a unit diagonal, and its spectrum does not depend on
    the coordinates' units. A non-positive diagonal entry (an all-zero column,
    no penalty) counts as 1.
    """
    d = torch.diagonal(H, dim1=-2, dim2=-1)
    s = torch.where(d > 0, d, 1.0).rsqrt()
    return H * (s[..., :, None] * s[..., None, :]), s


def damped_cholesky(H):
    """Cholesky factors of ``H + DAMPING * diag(H)``, ``H`` of shape ``(..., s, s)``.

    The factor of the Jacobi-scaled ``D^-1/2 H D^-1/2`` (unit diagonal), scaled
    back: the damping is relative to each coordinate's own curvature, so the
    metric does not depend on the features' units. (Relative to the largest
    diagonal entry instead, it swamped every coordinate whose curvature is under
    1e-10 of the largest: raw features spanning six decades of scale, whose
    curvatures span twelve, then crawled for a thousand epochs.) An exact zero on
    the diagonal (an all-zero column, no penalty) counts as 1. Where rounding
    leaves a scaled matrix indefinite, its damping grows a hundredfold; where
    even a damping of 1 does not make it definite (curvatures at the rounding
    level: unpenalised separated classes whose probabilities are 1 to within
    1e-17, fitted at tol=1e-10), the metric is its diagonal alone, Jacobi's.
    """
    scaled, s = jacobi_scaled(H)
    scaled.diagonal(dim1=-2, dim2=-1).add_(DAMPING)
    with threads_for_factors(H.shape[-1]):
        L, info = torch.linalg.cholesky_ex(scaled)
        damping = DAMPING
        while info.any():  # rare: escalate the failed matrices' damping only
            bad = info != 0
            damping *= 100.0
            if damping > 1.0:
                eye = torch.eye(H.shape[-1], dtype=L.dtype, device=L.device)
                L[bad] = eye * math.sqrt(1.0 + DAMPING)
                break
            retry = scaled[bad]
            # The scaled diagonal: 1, or 0 on an all-zero column.
            diag = torch.diagonal(H[bad], dim1=-2, dim2=-1)
            retry.diagonal(dim1=-2, dim2=-1).copy_(torch.where(diag > 0, 1.0, diag) + damping)
            L[bad], info[bad] = torch.linalg.cholesky_ex(retry)
    return L / s[..., :, None]


def cholesky_solve(rhs, factor):
    """``(L L^T)^-1 rhs`` for lower-triangular ``factor`` ``L`` (batched), on the threads
    :func:`threads_for_factors` gives its order.

    Two triangular solves, which run faster than ``torch.cholesky_solve``'s one
    call: one factor of 1,001 (two threads) 0.22 ms against 1.2 ms; on one
    thread, digits' ten class blocks of 65 26 us against 34 us, a thousand
    blocks of 22 0.74 ms against 0.95 ms.
    """
    with threads_for_factors(factor.shape[-1]):
        half = torch.linalg.solve_triangular(factor, rhs, upper=False)
        return torch.linalg.solve_triangular(factor.mT, half, upper=True)


def restricted_decrement(H, g, free):
    """``sqrt(g_F^T H_FF^-1 g_F)``: the Newton decrement of ``g`` on the coordinates
    ``free`` (a bool mask) alone, in :func:`damped_cholesky`'s factor of ``H_FF``."""
    idx = free.nonzero()[:, 0]
    if len(idx) == 0:
        return 0.0
    L = damped_cholesky(H[idx][:, idx])
    z = torch.linalg.solve_triangular(L, g[idx].to(L.dtype)[:, None], upper=False)
    return float(z.norm())


# metric_proximal_l1: faces visited at most (each one Cholesky factor of the free
# coordinates' block); from the previous iterate's signs a step needs one to three.
PROXIMAL_MAX_FACES = 200


def metric_proximal_l1(M, v, start, t):
    """``argmin_u 1/2 (u - v)^T M (u - v) + sum_j t_j |u_j|``: the L1 prox in metric ``M``.

    The proximal step of a dense metric (with a diagonal ``M`` it is
    soft-thresholding by ``t_j / M_jj``). An active-set method (Osborne's, the
    homotopy of LARS): the free coordinates ``F`` keep their signs ``sigma``
    and the rest stay at zero, so on a face the problem is the quadratic
    ``M_FF u_F = (M v)_F - t_F sigma_F``; the iterate moves towards that
    minimum until a coordinate reaches zero (it leaves ``F``), and where the
    face's minimum is reached, coordinates at zero whose gradient
    ``|(M (u - v))_j|`` exceeds ``t_j`` join ``F``, signed against it. The
    objective falls at every face, so no face repeats. ``t_j = 0`` marks an
    unpenalised coordinate (an intercept), always free. Starts from ``start``'s
    signs (the previous iterate: one to three faces per step).

    ``M`` (p, p) symmetric positive definite, ``v``, ``start``, ``t`` (p,), float64.
    """
    b = M @ v
    u = start.clone()
    penalised = t > 0
    free = (u != 0) | ~penalised
    sigma = torch.where(penalised, u.sign(), torch.zeros_like(u))
    one_at_a_time = False
    scale = float(torch.sqrt((b * v).abs().sum())) or 1.0
    for _ in range(PROXIMAL_MAX_FACES):
        idx = free.nonzero()[:, 0]
        target = torch.zeros_like(u)
        if len(idx):
            Mf = M[idx][:, idx]
            L, info = torch.linalg.cholesky_ex(Mf)
            rhs = (b[idx] - t[idx] * sigma[idx])[:, None]
            if info:
                target[idx] = torch.linalg.lstsq(Mf, rhs).solution[:, 0]
            else:
                target[idx] = torch.cholesky_solve(rhs, L)[:, 0]
        wrong = free & penalised & (target * sigma <= 0)
        if wrong.any():
            # Towards the face's minimum until the first signed coordinate reaches zero.
            alpha = torch.where(wrong, u / (u - target).where(u != target, 1.0), 2.0)
            alpha = alpha.clamp(0.0, 1.0)
            a = float(alpha.min())
            u = torch.where(free, u + a * (target - u), u)
            leaving = wrong & (alpha <= a)
            u[leaving] = 0.0
            free &= ~leaving
            sigma[leaving] = 0.0
            one_at_a_time = one_at_a_time or a == 0.0
            continue
        u = torch.where(free, target, torch.zeros_like(u))
        r = M @ (u - v)
        excess = torch.where(free, torch.zeros_like(u), r.abs() - t)
        excess = excess / torch.diagonal(M).sqrt()
        joining = excess > 1e-13 * scale
        if not joining.any():
            break
        if one_at_a_time:
            worst = int(excess.argmax())
            joining = torch.zeros_like(joining)
            joining[worst] = True
        free |= joining
        sigma = torch.where(joining, -r.sign(), sigma)
    return u


class DensePreconditioner(Preconditioner):
    """The full Hessian (``theta = [coef.ravel(), intercept]``), Cholesky-factorised."""

    kind = "dense"
    prox_in_metric = True

    def __init__(self, H, coef_shape, fit_intercept, levenberg=0.0):
        self.H = H
        self.levenberg = levenberg
        self.factor = damped_cholesky(_marquardt(H, levenberg))
        self.coef_shape = coef_shape
        self.fit_intercept = fit_intercept
        self._metric = None  # factor @ factor.T, for proximal_l1_

    def damped(self, levenberg):
        P = DensePreconditioner(self.H, self.coef_shape, self.fit_intercept, levenberg)
        P.base = self.undamped()
        return P

    def proximal_l1_(self, params, start, threshold):
        """In place, the L1 prox in this metric (:func:`metric_proximal_l1`) of the
        parameters after a step, from their values ``start`` before it; ``threshold``
        is ``lr * l1`` (the intercepts are not penalised).

        A softmax's shared intercept shift changes no probability and costs no
        penalty; the metric holds it only by its damping. The intercepts' mean
        stays where the step left it, as the projected directions keep it.
        """
        if self._metric is None:
            self._metric = self.factor @ self.factor.mT
        M = self._metric
        flat = [p.detach().reshape(-1).to(M.dtype) for p in params]
        v = torch.cat(flat)
        t = torch.zeros_like(v)
        t[: flat[0].numel()] = threshold
        u = metric_proximal_l1(M, v, torch.cat([p.reshape(-1) for p in start]).to(M.dtype), t)
        parts = list(u.split([f.numel() for f in flat]))
        if len(parts) > 1 and len(parts[1]) > 1:
            parts[1] = parts[1] - (parts[1].mean() - flat[1].mean())
        with torch.no_grad():
            for p, part in zip(params, parts, strict=True):
                p.copy_(part.reshape(p.shape))

    def free_decrement(self, grads, coef):
        """The Newton decrement of optimality gradients ``grads`` (an L1 part's
        minimum-norm subgradient) on the coordinates that are nonzero or pushed off
        zero, and every intercept: the smooth problem on the L1 solution's face.
        (The whole ``H`` would add directions an L1 kink holds: a softmax's
        shared shift, flat for the data term, where the penalty has no curvature.)"""
        g = torch.cat([t.reshape(-1) for t in grads]).to(self.H.dtype)
        free = ((coef != 0) | (grads[0] != 0)).reshape(-1)
        if self.fit_intercept:
            free = torch.cat([free, free.new_ones(self.coef_shape[0])])
        return restricted_decrement(self.H, g, free)

    def direction(self, grads):
        g = torch.cat([t.reshape(-1) for t in grads]).to(self.factor.dtype)
        d = cholesky_solve(g[:, None], self.factor)[:, 0].to(grads[0].dtype)
        n_coef = grads[0].numel()
        out = [d[:n_coef].reshape(grads[0].shape)]
        if len(grads) > 1:
            out.append(d[n_coef:].reshape(grads[1].shape))
        return out


class BlockPreconditioner(Preconditioner):
    """One ``(features + intercept)`` block per class: the Hessian without class coupling.

    Each sample's logit Hessian ``diag(p) - p p^T`` is at most twice its
    diagonal ``diag(p (1 - p))`` (``Var_p(v) <= 2 sum_k p_k (1 - p_k) v_k^2``),
    so ``H <= 2 P`` at the point of measurement.
    """

    kind = "block"

    def __init__(self, blocks, fit_intercept, levenberg=0.0):
        self.blocks = blocks
        self.levenberg = levenberg
        self.factor = damped_cholesky(_marquardt(blocks, levenberg))
        self.fit_intercept = fit_intercept

    def damped(self, levenberg):
        P = BlockPreconditioner(self.blocks, self.fit_intercept, levenberg)
        P.base = self.undamped()
        return P

    def direction(self, grads):
        coef = grads[0]
        g = coef.to(self.factor.dtype)
        if self.fit_intercept:
            g = torch.cat([g, grads[1].to(self.factor.dtype)[:, None]], 1)
        d = cholesky_solve(g[:, :, None], self.factor)[:, :, 0].to(coef.dtype)
        if self.fit_intercept:
            return [d[:, :-1].contiguous(), d[:, -1].contiguous()]
        return [d]


class DiagonalPreconditioner(Preconditioner):
    """The Hessian's diagonal (Jacobi): the per-coordinate scale of the problem."""

    kind = "diagonal"

    def __init__(self, diagonals):
        # [coef_diag (K, d), intercept_diag (K,)]; zeros (all-zero columns) become 1.
        # No floor relative to the largest entry: each coordinate keeps its own scale.
        self.diagonals = [torch.where(t > 0, t, torch.ones_like(t)) for t in diagonals]

    def direction(self, grads):
        return [g / d.to(g.dtype) for g, d in zip(grads, self.diagonals, strict=True)]

    def inverse_diagonal(self):
        """``1 / P_jj`` for the coefficients: the L1 prox's per-coordinate scale."""
        return 1.0 / self.diagonals[0]


def _chunks(data, rows, n_columns):
    """Float64 dense chunks of the curvature rows, each under :data:`CHUNK_NUMBERS` numbers."""
    chunk_rows = max(1, min(2048, CHUNK_NUMBERS // max(n_columns, 1)))
    yield from data.float64_chunks(rows, chunk_rows)


def measure_preconditioner(data, penalty, coef, intercept, mean, kind, constant=None):
    """Measure the curvature at ``(coef, intercept)`` and return the :class:`Preconditioner`.

    Parameters
    ----------
    data : sktorch_lr._data.TrainingData
    penalty : Penalty
    coef, intercept : Tensors (intercept None without one)
        The solver's (centred) parameters.
    mean : Tensor of shape (n_features,) or None
        The centring of the features; the Hessian is that of the centred
        parametrisation, ``X - mean`` in place of ``X``.
    kind : {"dense", "block", "diagonal"}
        From :func:`choose_preconditioner`.
    constant : bool Tensor of shape (n_features,) or None
        The constant columns (zero once centred), whose curvature the sparse
        diagonal's formula would leave as rounding; dense rows are centred
        explicitly, where they are exactly zero.

    The Hessian is measured with autograd on the logits (see
    :func:`logit_curvature`) and chained through the linear layer; it uses at
    most :data:`CURVATURE_MAX_ROWS` evenly strided rows, in float64.
    """
    rows = data.curvature_rows(CURVATURE_MAX_ROWS)
    normalizer = _sample_weight_sum(data, rows)
    coef = coef.detach().to(torch.float64)
    intercept = None if intercept is None else intercept.detach().to(torch.float64)
    fit_intercept = intercept is not None
    mean64 = None if mean is None else mean.to(torch.float64)
    K, d = coef.shape
    if kind == "diagonal" and data.X.layout == torch.sparse_coo:
        return _sparse_diagonal(data, rows, normalizer, penalty, coef, intercept, mean64, constant)
    total = 0.0
    width = (d + 1) * max(K, 1) if kind == "dense" else d + 1
    for X, _, sw in _chunks(data, rows, width):
        if mean64 is not None:
            X = X - mean64
        with torch.no_grad():
            logits = linear_logits(X, coef, intercept)
        if kind == "dense":
            A = link_jacobian(logits, sw, normalizer)
            part = linear_model_hessian(X, A, 0.0, fit_intercept)
        else:
            a = logit_curvature_diagonal(logits, sw, normalizer)
            if kind == "block":
                part = class_blocks(_augmented(X, fit_intercept), a)
            else:
                a_s = _with_weights(a, sw)
                part = torch.cat([a_s.T @ X.pow(2), a_s.sum(0)[:, None]], 1)
        total = total + part
    if kind not in ("dense", "block"):  # the diagonal, as _finish reads it
        total = _floored(total, normalizer)
    return _finish(total, kind, penalty, coef.shape, fit_intercept)


def _with_weights(a, sample_weight):
    """The logit curvature ``a`` (n, K) with the sample weights (ones) as a last
    column: one product gives the Jacobi diagonal and the floor's second moments."""
    n = a.shape[0]
    s = torch.ones(n, dtype=a.dtype, device=a.device) if sample_weight is None else sample_weight
    return torch.cat([a, s.to(a.dtype)[:, None]], 1)


def _floored(total, normalizer):
    """The Jacobi diagonal (K, d + 1) at least :data:`DIAGONAL_FLOOR` of its value at p = 1/2.

    ``total`` (K + 1, d + 1) is the diagonal over the sample weights' row
    (:func:`_with_weights`): ``sum_i s_i x_ij^2``, whose quarter over ``S`` is
    the largest curvature the loss can have along coordinate ``j`` of any class
    (the intercept's: 1/4). A relative floor per column: each coordinate keeps
    its own scale.
    """
    return torch.maximum(total[:-1], (DIAGONAL_FLOOR / 4) * total[-1] / normalizer)


def _finish(total, kind, penalty, coef_shape, fit_intercept):
    K, d = coef_shape
    if kind == "dense":
        if penalty.l2:
            total.diagonal()[: K * d].add_(penalty.l2)
        return DensePreconditioner(total, coef_shape, fit_intercept)
    if kind == "block":
        idx = torch.arange(d)
        total[:, idx, idx] += penalty.l2
        return BlockPreconditioner(total, fit_intercept)
    coef_diag = total[:, :d] + penalty.l2
    return DiagonalPreconditioner([coef_diag, total[:, d]] if fit_intercept else [coef_diag])


def _sparse_diagonal(data, rows, normalizer, penalty, coef, intercept, mean, constant):
    """The Jacobi diagonal for sparse ``X``, centred implicitly (never densified).

    ``sum_i a_i (x_ij - m_j)^2 = (X^2)^T a - 2 m_j (X^T a)_j + m_j^2 sum_i a_i``,
    zero on the ``constant`` columns.
    """
    X, y, sw = data.float64_sample(rows)
    with torch.no_grad():
        logits = linear_logits(X, coef, None)
        shift = intercept if mean is None else intercept - coef @ mean
        if intercept is not None:
            logits = logits + shift
    a = logit_curvature_diagonal(logits, sw, normalizer)  # (n, K)
    X2 = torch.sparse_coo_tensor(
        X.indices(), X.values().pow(2), X.shape, check_invariants=False, is_coalesced=True
    )
    a_s = _with_weights(a, sw)
    diag = torch.sparse.mm(X2.t(), a_s).T  # (K + 1, d)
    if mean is not None:
        Xa = torch.sparse.mm(X.t(), a_s).T
        diag = diag - 2 * mean * Xa + mean.pow(2) * a_s.sum(0)[:, None]
        if constant is not None:
            diag[:, constant] = 0.0  # what the three terms cancel to, less their rounding
    total = _floored(torch.cat([diag, a_s.sum(0)[:, None]], 1), normalizer)
    return _finish(total, "diagonal", penalty, coef.shape, intercept is not None)


def _sample_weight_sum(data, rows):
    if data.sample_weight is None:
        return float(data.n_samples if rows is None else len(rows))
    sw = data.sample_weight if rows is None else data.sample_weight[rows.to(data.device)]
    return float(sw.sum()) or 1.0


def choose_preconditioner(n_features, n_outputs, *, l1, partial=False):
    """``"dense"``, ``"block"`` or ``"diagonal"`` for a problem of this shape.

    - binary, or multinomial with at most
      :data:`MAX_DENSE_MULTINOMIAL_PARAMS` parameters: the full Hessian (with
      an L1 part its proximal step is :func:`metric_proximal_l1`);
    - an L1 part in ``partial_fit``: the diagonal. Each call measures the
      metric on its own chunk and later calls keep it, with no rejection of a
      step that raises the objective (the full fit's); in a chunk's metric,
      flat along directions the chunk does not resolve, the proximal step
      jumped along them (standardised breast cancer in chunks of 100 rows,
      ``l1_ratio=1``: coefficients of 366 at the 34th call, divergence at the
      66th);
    - more classes: per-class blocks; with an L1 part the diagonal, whose
      proximal step is soft-thresholding by ``lr * l1 / P_jj`` (a per-class
      proximal step cost more time than its fewer epochs saved: standardised
      digits, ``l1_ratio=1``, ``C=100``: 252 epochs in 1.3 s against 924 in 0.73 s);
    - blocks wider than :data:`MAX_BLOCK_SIZE` (wide sparse data): the diagonal.
      Sparse data of fewer features are densified a chunk of rows at a time
      for the measurement only.
    """
    block = n_features + 1
    if block > MAX_BLOCK_SIZE or (l1 and partial):
        return "diagonal"
    if n_outputs == 1 or n_outputs * block <= MAX_DENSE_MULTINOMIAL_PARAMS:
        return "dense"
    return "diagonal" if l1 else "block"


# ------------------------------------------------------------ the step rules

# Per-call overheads, in the cost model's units (about one multiply-add), of
# an epoch and of a curvature measurement: what small problems pay whatever
# their size (kernel launches, Python). The batch's model (_batch.py).
EPOCH_OVERHEAD = 2.5e5
MEASURE_OVERHEAD = 3.5e5
# Multiply-adds per unit: matrix products run about this many per nanosecond.
MADDS_PER_UNIT = 4.0
# The single solver's model (measure_cost_ratio), measured on two cores. An
# epoch of lr="auto" does more than its forward and backward products: the step
# rule, the direction's solve, the conjugate step's curvature along it, the
# stopping measures -- about 1.2 ms whatever the size (beyond their products:
# breast cancer 1.3 ms, digits 1.1 ms, 20,000 x 30 with 5 classes 1.3 ms,
# 3,000 x 300 with 3 classes 1.9 ms) ...
SOLVER_EPOCH_OVERHEAD = 4.8e6
# ... and a measurement's fixed part about 0.35 ms (breast cancer's whole one) ...
SOLVER_MEASURE_OVERHEAD = 1.4e6
# ... while its products, wide ones, run this many times faster per multiply-add
# than an epoch's thin ones (measured 9 to 45 multiply-adds per ns: digits'
# class blocks 10, 20,000 x 30 with 5 classes' dense Hessian 18, 3,000 x 300
# with 3 classes' blocks 45). The model once left both out and put a measurement
# of digits' blocks at 17.6 epochs (it costs 5.8): remeasured every 71 epochs,
# the stale metric took 86 epochs on raw digits. This one says 1.4 (it still
# leaves out the blocks' per-class autograd and factorisations), so every 6
# epochs: 27 on raw digits; over the C grid every 5 to 12 measured alike.
MEASURE_PRODUCT_SPEEDUP = 3.0
# Power iterations (at most) for the top eigenvalue of the diagonal preconditioner's P^-1 H.
POWER_ITERATIONS = 30
# The momentum of mini-batches and partial_fit when momentum="auto".
STOCHASTIC_MOMENTUM = 0.9
# Assumed lowest eigenvalue of ``P^-1 H`` for the block preconditioner, whose
# highest is at most 2 (see BlockPreconditioner).
BLOCK_LOW = 0.5


def measure_cost_ratio(kind, n_rows, nnz_per_row, n_features, n_outputs, n_measured):
    """Cost of one curvature measurement, in epochs of the single solver.

    An epoch: forward + backward products over all rows, plus
    :data:`SOLVER_EPOCH_OVERHEAD`. A dense or block measurement: its wide
    products (:data:`MEASURE_PRODUCT_SPEEDUP` times faster per multiply-add;
    with more classes than columns :func:`class_blocks` takes the upper
    triangle of the row products only) and a factorisation, plus
    :data:`SOLVER_MEASURE_OVERHEAD`. The diagonal's power iteration is thin
    products, at the epochs' speed, with the batch's overheads.
    """
    b = n_features + 1
    K = n_outputs
    products = 3.0 * n_rows * nnz_per_row * K / MADDS_PER_UNIT
    if kind == "diagonal":
        # The diagonal, then power iteration for the top of P^-1 H's spectrum
        # (each Hessian-vector product about two passes over the rows measured);
        # its cadence on wide data was set with the batch's overheads, and kept.
        passes = 1 + 2 * POWER_ITERATIONS
        measure = passes * 3.0 * n_measured * nnz_per_row * K
        return (measure / MADDS_PER_UNIT + POWER_ITERATIONS * MEASURE_OVERHEAD) / (
            products + EPOCH_OVERHEAD
        )
    if kind == "dense":
        P = K * b
        measure = n_measured * P * P + P**3 / 3.0
    else:
        per_row = b * b if K <= b else b * (b + 1) / 2.0
        measure = n_measured * K * per_row + K * b**3 / 3.0
    speed = MADDS_PER_UNIT * MEASURE_PRODUCT_SPEEDUP
    return (measure / speed + SOLVER_MEASURE_OVERHEAD) / (products + SOLVER_EPOCH_OVERHEAD)


def preconditioned_spectrum(kind, top_eigenvalue=None):
    """``(low, high)``: the range the eigenvalues of ``P^-1 H`` are expected in.

    - ``"dense"``: ``P`` is the Hessian, so 1 (at the point of measurement;
      :class:`~sktorch_lr._solver.RemeasureSchedule` keeps it fresh);
    - ``"block"``: at most 2 (the class-coupling bound), at least
      :data:`BLOCK_LOW`;
    - ``"diagonal"``: ``top_eigenvalue()`` (power iteration on
      Hessian-vector products), and a small fraction of it.
    """
    if kind == "dense":
        return 1.0, 1.0
    if kind == "block":
        return BLOCK_LOW, 2.0
    high = top_eigenvalue() if top_eigenvalue is not None else 1.0
    return high / MAX_CONDITION**0.5, high


def step_rule(low, high, momentum, *, nesterov, stochastic):
    """``(lr, momentum)`` of the SGD step on ``P^-1 g`` for eigenvalues in ``[low, high]``.

    - full batch, ``momentum="auto"``: Polyak's heavy ball (or Nesterov's
      constant-momentum rule);
    - full batch, a given momentum: ``lr = (1 + momentum) / high``;
    - mini-batches and ``partial_fit``: ``lr = (1 - momentum) / high``, momentum
      :data:`STOCHASTIC_MOMENTUM` when ``"auto"``: the step of the averaged
      gradient noise is that of plain SGD with ``lr / (1 - momentum)``.
    """
    if stochastic:
        m = STOCHASTIC_MOMENTUM if momentum == "auto" else float(momentum)
        return (1.0 - m) / high if m > 0 else 1.0 / high, m
    if momentum == "auto":
        rule = nesterov_rule(high, low) if nesterov else heavy_ball_rule(high, low)
    else:
        rule = lr_for_momentum(high, low, float(momentum))
    return rule.lr, rule.momentum
