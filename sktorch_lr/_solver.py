"""The momentum-SGD training loop and the small rules ``lr="auto"`` adds to it.

One step is the lesson's: forward, loss, backward, step, zero_grad. The
gradient comes from autograd (``loss.backward()``); the step has the exact
semantics of :class:`torch.optim.SGD` (heavy ball, ``dampening=0``, optional
Nesterov), written out here so that a fit does not pay ``torch.optim``'s
first-call import of ``torch._dynamo``; ``tests/test_solver.py`` checks it
step for step against ``torch.optim.SGD``. The L1 part of the objective is
applied after the step by soft-thresholding (a proximal step), so
coefficients become exactly zero.

With ``lr="auto"`` the step runs on the *preconditioned* gradient: before the
SGD update, each parameter's ``.grad`` is replaced by ``P^-1 g``, where ``P``
is the Hessian measured with autograd (:mod:`sktorch_lr._curvature`), in a
parametrisation with centred features. The problem the momentum step then sees
has curvature close to 1 in every direction, whatever the features' scales or
``C``. Each rule of ``lr="auto"`` is a small unit below, with its own tests:

- :class:`Problem`: the objective, its autograd gradient and the centring;
- :class:`StepControl`: reject a step that raised the objective (function
  restart), shorten the step, let it grow back;
- :class:`RemeasureSchedule`: when to measure the curvature again, within a
  budget of the fit's time;
- :class:`SpectrumEstimate`: learn how flat ``P^-1 H`` is from the observed
  convergence (heavy ball's momentum);
- :class:`ConjugateStep`: on the per-class block metric, each epoch's momentum
  and ``lr`` from nonlinear conjugate gradients instead;
- :class:`LineSearch`: in Newton's mode, far from the optimum, ``lr`` is the
  minimum of the objective along the Newton direction;
- :class:`StallStop`: stop when no step makes progress in the working precision;
- :class:`BatchGrowth`: mini-batches double when their epochs stall or creep.

``tol`` bounds the Newton decrement ``lambda = sqrt(g^T P^-1 g)``, the
gradient's size in the curvature's metric: the objective is then within about
``lambda^2 / 2`` of its minimum, whatever the scale of the features.
"""

import math
from dataclasses import dataclass, field

import torch

from ._curvature import (
    logit_curvature_along,
    logit_derivatives_along,
    logit_drift,
    measure_preconditioner,
    stale_decrement_bound,
)
from ._data import to_float64
from ._objective import (
    data_term,
    linear_logits,
    optimality_gradient,
    penalty_term,
    soft_threshold_,
)

# Full-data evaluations of dense X go through in blocks of this many rows.
EVAL_CHUNK_ROWS = 32_768
# A rise of the objective smaller than this many rounding units of its value is
# rounding, not a sign of a too-long step.
NOISE_ULPS = 16


class DivergenceError(ValueError):
    """Training diverged: the objective became non-finite or exploded."""


@dataclass
class SolverState:
    """What survives between epochs and between ``partial_fit`` calls.

    ``lr`` and ``momentum`` are torch.optim.SGD's; with a ``preconditioner``
    (``lr="auto"``) they apply to ``P^-1 g`` instead of ``g``.
    """

    lr: float
    momentum: float
    nesterov: bool
    adaptive: bool  # lr="auto": reject rising steps, remeasure, stop on stalls
    buffers: list = field(default_factory=list)
    preconditioner: object = None
    lr_max: float = math.inf  # the step StepControl lets lr grow back to
    low: float | None = None  # the range assumed for the eigenvalues of P^-1 H
    high: float | None = None
    partial_fit_calls: int = 0


@dataclass
class SolveResult:
    n_iter: int
    loss_curve: list
    converged: bool
    stopped: bool = False  # a callback asked to stop
    stalled: bool = False  # no progress possible in the working precision
    decrement: float = math.nan  # the final stopping measure
    history: dict | None = None


# ----------------------------------------------------------------- the step


def momentum_step_(params, state):
    """One ``torch.optim.SGD`` step (``dampening=0``, no weight decay) on ``params``.

    Reads ``p.grad``; keeps one momentum buffer per parameter in ``state``. The
    arithmetic is ``torch.optim.SGD``'s ``foreach`` implementation, op for op:
    ``buf = momentum * buf + grad`` (``buf = grad`` on the first step), then
    ``p -= lr * buf`` (``p -= lr * (grad + momentum * buf)`` with Nesterov).
    """
    grads = [p.grad for p in params]
    m = state.momentum
    with torch.no_grad():
        if m == 0:
            torch._foreach_add_(params, grads, alpha=-state.lr)
            return
        if not state.buffers:
            state.buffers = [torch.clone(g).detach() for g in grads]
        else:
            torch._foreach_mul_(state.buffers, m)
            torch._foreach_add_(state.buffers, grads)
        if state.nesterov:
            steps = torch._foreach_add(grads, state.buffers, alpha=m)
        else:
            steps = state.buffers
        torch._foreach_add_(params, steps, alpha=-state.lr)


def proximal_l1_(coef, state, threshold, coef_before):
    """Soft-threshold ``coef`` by ``lr * threshold`` after a step; keep the momentum consistent.

    ``threshold`` is ``l1`` (plain steps) or ``l1 / P_jj`` per coefficient (the
    proximal operator in the diagonal preconditioner's metric). The momentum
    buffer is reset to the step actually taken, ``(coef_before - coef) / lr``
    (the inertial proximal method, iPiano), so a coefficient held at zero by
    the penalty does not gather momentum.
    """
    with torch.no_grad():
        soft_threshold_(coef, state.lr * threshold)
        if state.buffers:
            state.buffers[0].copy_((coef_before - coef) / state.lr)


def zero_grad_(params):
    for p in params:
        p.grad = None


def prox_in_metric(penalty, P):
    """Whether the L1 part of ``penalty`` is handled in ``P``'s own metric (the
    prox of :meth:`step_` and the stopping decrement of ``solve`` agree on it)."""
    return bool(penalty.l1) and P is not None and P.prox_in_metric


def step_(params, state, penalty, direction=None):
    """The SGD step on ``direction`` (default: the gradients), then the L1 prox.

    The prox is in the preconditioner's metric: soft-thresholding by
    ``lr * l1 / P_jj`` for a diagonal one, a small quadratic program for a
    dense one (:meth:`~sktorch_lr._curvature.DensePreconditioner.proximal_l1_`,
    which moves the intercepts too); either way the momentum buffers are reset
    to the step actually taken (iPiano).
    """
    coef = params[0]
    if direction is not None:
        for p, d in zip(params, direction, strict=True):
            p.grad = d
    P = state.preconditioner
    in_metric = prox_in_metric(penalty, P)
    if in_metric:
        before = [p.detach().clone() for p in params]
    elif penalty.l1:
        before = coef.detach().clone()
    momentum_step_(params, state)
    if in_metric:
        P.proximal_l1_(params, before, state.lr * penalty.l1)
        if state.buffers:
            with torch.no_grad():
                for buffer, p, b in zip(state.buffers, params, before, strict=True):
                    buffer.copy_((b - p) / state.lr)
    elif penalty.l1:
        threshold = penalty.l1
        if P is not None:
            threshold = penalty.l1 * P.inverse_diagonal().to(coef.dtype)
        proximal_l1_(coef, state, threshold, before)


# -------------------------------------------------------------- the problem


class Problem:
    """The objective the solver minimises, with gradients from autograd.

    Parameters
    ----------
    data : sktorch_lr._data.TrainingData
    penalty : Penalty
    fit_intercept : bool
    centred : bool
        Work in the centred parametrisation: the parameters are ``(W, c)`` and
        the model's intercept is ``b = c - W @ mean``. The logits, and so the
        objective, are the same functions of ``(W, b)``; but the Hessian in
        ``(W, c)`` no longer couples the intercept to the features' means,
        which is what makes raw (unscaled, offset) features well conditioned.
        Sparse ``X`` is centred implicitly (only the intercept moves), never
        densified.
    """

    # The rows are in this process: curvature_along and logit_change can run
    # (ConjugateStep and the stale-metric bound). Not so for Dask.
    rows_at_hand = True

    def __init__(self, data, penalty, *, fit_intercept, centred):
        self.data = data
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.mean = data.weighted_mean() if centred and fit_intercept else None
        # Columns that centring makes zero: their coefficients see the penalty alone.
        self.constant = None if self.mean is None else data.constant_columns()[0]
        # Whether a full evaluation keeps its logits (self.logits), for curvature_along:
        # only while ConjugateStep needs them (on 1M x 100 they are 4 MB and more).
        self.keep_logits = False
        self.logits = None
        # Whether full evaluations sum in float64 (refine_precision).
        self.float64_sums = False

    # --- parametrisation
    def model_intercept(self, coef, intercept):
        """The model's ``b`` from the solver's parameters (differentiable)."""
        if intercept is None or self.mean is None:
            return intercept
        return intercept - coef @ self.mean.to(coef.dtype)

    def to_solver(self, coef, intercept):
        """In place: the model's ``(W, b)`` become the solver's ``(W, c)``."""
        if intercept is not None and self.mean is not None:
            with torch.no_grad():
                intercept.add_(coef @ self.mean)

    def to_model(self, coef, intercept):
        """In place: the solver's ``(W, c)`` become the model's ``(W, b)``."""
        if intercept is not None and self.mean is not None:
            with torch.no_grad():
                intercept.sub_(coef @ self.mean)

    @property
    def sum_eps(self):
        """The rounding of a full evaluation's sums: float64's after :meth:`refine_precision`."""
        return torch.finfo(torch.float64 if self.float64_sums else self.data.dtype).eps

    def refine_precision(self):
        """From now on, sum full evaluations in float64; False where nothing changes.

        A float32 gradient is a sum of ``n`` float32 products: its rounding
        grows with ``n`` and with the features' offsets from their means
        (the implicit centring subtracts ``mean * sum(r)`` from ``X^T r``), and
        in the preconditioned metric it can exceed ``tol`` (2,500 rows whose
        offsets are 10 times their spread: a decrement of 3e-4 from rounding
        alone). :func:`solve` calls this when float32 stalls above ``tol``:
        each block of rows is then centred and multiplied in float64, and the
        gradients are rounded to float32 once, at the end. The parameters stay
        in the training dtype.
        """
        if self.float64_sums or self.data.dtype == torch.float64:
            return False
        self.float64_sums = True
        return True

    def model_objective(self, coef, intercept):
        """``J`` of the model's own ``(W, b)`` (the training dtype's numbers), from the
        raw rows without centring, in float64 arithmetic.

        After :meth:`refine_precision` the solver's objective is that of its
        centred float64 view, ``b = c - W @ mean`` taken exactly; rounded to
        float32, large coefficients on features far from zero cancel in ``b``
        past float32's digits, and this value shows it.
        """
        X, y, sw = self.data.full()
        coef = coef.to(torch.float64)
        intercept = None if intercept is None else intercept.to(torch.float64)
        total = 0.0
        with torch.no_grad():
            for rows, Xr in _row_blocks(X):
                yr, swr = (y, sw) if Xr is X else (y[rows], None if sw is None else sw[rows])
                Xr, yr, swr = to_float64(Xr, yr, swr)
                z = linear_logits(Xr, coef, intercept)
                total += float(data_term(z, yr, swr, self.data.weight_sum))
            pen = penalty_term(coef, self.penalty)
        return total + (0.0 if pen is None else float(pen))

    def _float64_block(self, Xr, coef, raw):
        """``(X_block, coef, intercept)`` in float64 for :meth:`evaluate`, explicitly
        centred (a sparse block keeps the centring in the intercept)."""
        coef = coef.to(torch.float64)
        raw = None if raw is None else raw.to(torch.float64)
        Xr = Xr.to(torch.float64)
        if raw is None or self.mean is None:
            return Xr, coef, raw
        mean = self.mean.to(torch.float64)
        if Xr.layout == torch.sparse_coo:
            return Xr, coef, raw - coef @ mean
        return Xr - mean, coef, raw

    # --- objective and gradient
    def evaluate(self, params, batch=None):
        """Forward + backward of the smooth objective; returns the objective (with L1).

        ``batch`` is ``(X, y, sample_weight, normalizer)`` of a mini-batch, or
        None for all the data. Dense data taller than :data:`EVAL_CHUNK_ROWS`
        go through in row blocks whose gradients autograd accumulates into
        ``.grad``: the same sum, with the per-sample temporaries of one block
        alive at a time. With ``keep_logits`` a full evaluation keeps its
        logits (``self.logits``) for :meth:`curvature_along`.
        """
        coef = params[0]
        raw = params[1] if self.fit_intercept else None
        penalty = self.penalty
        if batch is None:
            X, y, sw = self.data.full()
            normalizer = self.data.weight_sum
        else:
            X, y, sw, normalizer = batch
        self.logits = None
        keep = self.keep_logits and batch is None
        logits = []
        loss = 0.0
        exact = self.float64_sums and batch is None
        for rows, Xr in _row_blocks(X):
            if Xr is X:  # one block: no slicing
                yr, swr = y, sw
            else:
                yr, swr = y[rows], None if sw is None else sw[rows]
            if exact:
                Xr, coef_r, intercept_r = self._float64_block(Xr, coef, raw)
                yr = yr.to(torch.float64) if yr.is_floating_point() else yr
                swr = None if swr is None else swr.to(torch.float64)
            else:
                coef_r, intercept_r = coef, self.model_intercept(coef, raw)
            z = linear_logits(Xr, coef_r, intercept_r)
            part = data_term(z, yr, swr, normalizer)
            if rows.start == 0:  # the penalty once (float64 with the float64 sums)
                pen = penalty_term(coef_r if exact else coef, penalty, include_l1=False)
                part = part if pen is None else part + pen
            part.backward()
            loss = part.detach() if rows.start == 0 else loss + part.detach()
            if keep:
                logits.append(z.detach())
        if keep:
            # The logits at these parameters, for curvature_along.
            self.logits = logits[0] if len(logits) == 1 else torch.cat(logits)
        self.project_([p.grad for p in params])
        self.fix_constant_columns_(params)
        if not penalty.l1:
            return loss.detach()
        with torch.no_grad():
            return loss + penalty_term(coef.double() if exact else coef, penalty._replace(l2=0.0))

    def project_(self, grads):
        """Remove, in place, what rounding put along the softmax's shared shifts.

        Shifting every class's intercept by the same amount changes no
        probability, so the intercept gradients sum to zero over the classes.
        So do the coefficients' without an L1 part: the data term does not
        change along a shift ``v`` shared by all classes, and an L2 penalty's
        gradient there is ``l2`` times the classes' mean, zero on the
        coefficients :meth:`centre_classes_` keeps. In floating point these
        sums are rounding noise, which a preconditioner nearly singular along
        that direction would blow up; the preconditioned directions are
        projected too. A per-class metric (the block preconditioner) sees
        each class's curvature along ``v`` but not that the shared shift has
        only the penalty's: unprojected, its steps drift along that flat
        direction and come back over hundreds of epochs (a near-constant
        column without an intercept, 300 parameters: 870 epochs).
        """
        if grads is None or grads[0].shape[0] < 2:
            return grads
        with torch.no_grad():
            if self.fit_intercept:
                grads[1].sub_(grads[1].mean())
            if not self.penalty.l1:
                grads[0].sub_(grads[0].mean(0, keepdim=True))
        return grads

    def fix_constant_columns_(self, params):
        """In place: the gradient of a constant column's coefficients is the penalty's.

        Centred, a constant column is zero (its mean is its value exactly: see
        :meth:`~sktorch_lr._data.TrainingData.constant_columns`), so the data
        term does not depend on its coefficients; autograd's ``X^T r - mean *
        sum(r)`` leaves rounding there, which an unpenalised metric, zero along
        that coordinate, would take as a step. They start at zero and stay
        there (a warm start's values fall back to zero under an L2 part). The
        measured curvature is exact already (the curvature rows are centred
        explicitly).
        """
        if self.constant is None:
            return
        coef = params[0]
        with torch.no_grad():
            coef.grad[:, self.constant] = self.penalty.l2 * coef[:, self.constant]

    def centre_classes_(self, params):
        """In place: coefficients whose mean over the classes is zero, without an L1 part.

        Subtracting that mean changes no probability and lowers an L2 penalty,
        so the optimum has it, and :meth:`project_`'s directions keep it.
        """
        coef = params[0]
        if coef.shape[0] >= 2 and not self.penalty.l1:
            with torch.no_grad():
                coef.sub_(coef.mean(0, keepdim=True))

    def curvature_along(self, params, direction):
        """``v^T H v`` for ``v = direction`` at the last full evaluation's parameters.

        The objective's curvature along ``v`` (float64), for
        :class:`ConjugateStep`'s step length: one product ``X v`` (the logits'
        change along ``v``, through the centring) and the closed-form logit
        curvature at the kept logits (:func:`~sktorch_lr._curvature.logit_curvature_along`).
        """
        X, _, sw = self.data.full()
        coef_v = direction[0]
        intercept_v = self.model_intercept(coef_v, direction[1]) if self.fit_intercept else None
        with torch.no_grad():
            z = linear_logits(X, coef_v, intercept_v)
            value = logit_curvature_along(self.logits, sw, self.data.weight_sum, z)
            if self.penalty.l2:
                value = value + self.penalty.l2 * coef_v.double().square().sum()
        return float(value)

    def line_minimum(self, params, direction, slope0):
        """The step ``t`` that minimises ``J(theta - t d)`` along ``d = direction``.

        ``theta`` are the last full evaluation's parameters and ``slope0 =
        g^T d > 0``. The logits are affine in ``t``, ``z(t) = z - t X d``, from
        the kept logits and one product ``X d`` (through the centring): each of
        at most :data:`LineSearch.ITERATIONS` safeguarded Newton steps on ``t``
        costs a pass over the ``n x K`` logits, not over ``X``
        (:func:`~sktorch_lr._curvature.logit_derivatives_along`); the
        iteration is :meth:`LineSearch.minimise`.
        """
        X, y, sw = self.data.full()
        S = self.data.weight_sum
        coef, coef_d = params[0].detach(), direction[0]
        intercept_d = self.model_intercept(coef_d, direction[1]) if self.fit_intercept else None
        l2 = self.penalty.l2
        with torch.no_grad():
            dz = linear_logits(X, coef_d, intercept_d).to(torch.float64)
            z0 = self.logits.to(torch.float64)
            # The penalty along the line: l2/2 ||W - t d_W||^2.
            wd = float((coef.double() * coef_d.double()).sum()) if l2 else 0.0
            dd = float(coef_d.double().square().sum()) if l2 else 0.0
            sw64 = None if sw is None else sw.to(torch.float64)

            def derivatives(t):
                first, second = logit_derivatives_along(z0 - t[0] * dz, y, dz)
                if sw64 is not None:
                    first, second = first * sw64, second * sw64
                first, second = torch.stack([first.sum(), second.sum()]).tolist()
                return [-first / S + l2 * (t[0] * dd - wd)], [second / S + l2 * dd]

            return LineSearch.minimise(derivatives, [slope0])[0]

    def drift_since(self, params, then):
        """:func:`~sktorch_lr._curvature.logit_drift` of the logits from parameters ``then``.

        One product ``X (params - then)`` through the centring (the logits are
        linear in the parameters), a block of rows at a time, so no ``(n, K)``
        array is kept.
        """
        X, _, _ = self.data.full()
        coef = params[0].detach() - then[0]
        intercept = None
        if self.fit_intercept:
            intercept = self.model_intercept(coef, params[1].detach() - then[1])
        with torch.no_grad():
            return max(logit_drift(linear_logits(Xr, coef, intercept)) for _, Xr in _row_blocks(X))

    def curvature_data(self):
        """The rows the curvature is measured on (``TrainingData`` strides them itself)."""
        return self.data

    def measure(self, params, kind):
        """The :class:`~sktorch_lr._curvature.Preconditioner` at ``params``."""
        return measure_preconditioner(
            self.curvature_data(),
            self.penalty,
            params[0],
            params[1] if self.fit_intercept else None,
            self.mean,
            kind,
            self.constant,
        )

    def top_eigenvalue(self, params, preconditioner):
        """Largest eigenvalue of ``P^-1 H``: power iteration on Hessian-vector products.

        On the curvature rows (float64), in the problem's parametrisation; for
        the diagonal preconditioner, whose ``P^-1 H`` has no bound of its own.
        The products are :func:`~sktorch_lr._curvature.linear_model_hvp`'s.
        """
        from ._curvature import CURVATURE_MAX_ROWS, POWER_ITERATIONS, linear_model_hvp

        data = self.curvature_data()
        rows = data.curvature_rows(CURVATURE_MAX_ROWS)
        X, _, sw = data.float64_sample(rows)
        normalizer = float(X.shape[0]) if sw is None else (float(sw.sum()) or 1.0)
        shapes = [p.shape for p in params]
        sizes = [p.numel() for p in params]
        mean = None if self.mean is None else self.mean.to(torch.float64)
        coef = params[0].detach().to(torch.float64)
        intercept = None
        if self.fit_intercept:
            intercept = params[1].detach().to(torch.float64)
            intercept = intercept if mean is None else intercept - coef @ mean
        with torch.no_grad():
            logits = linear_logits(X, coef, intercept)
        hvp = linear_model_hvp(X, logits, sw, normalizer, self.penalty.l2, mean)

        def product(v):
            parts = [p.reshape(shape) for p, shape in zip(v.split(sizes), shapes, strict=True)]
            return torch.cat([h.reshape(-1) for h in hvp(*parts)])

        scale = torch.cat([d.reshape(-1) for d in preconditioner.diagonals]).rsqrt()
        gen = torch.Generator(device=coef.device).manual_seed(0)
        v = torch.randn(sum(sizes), generator=gen, dtype=torch.float64, device=coef.device)
        v /= v.norm()
        top = 0.0
        for _ in range(POWER_ITERATIONS):
            w = scale * product(scale * v)
            new = float(v @ w)
            v = w / w.norm().clamp_min(1e-300)
            if abs(new - top) <= 1e-2 * abs(new):
                return new
            top = new
        return top

    def optimality_gradients(self, params):
        """The gradients, the L1 part as its minimum-norm subgradient (zero at the optimum)."""
        grads = [optimality_gradient(params[0].grad, params[0].detach(), self.penalty.l1)]
        return grads + [p.grad for p in params[1:]]


# ---------------------------------------------------------------- the rules


class StepControl:
    """Reject a step that raised the objective; shorten, then regrow, the step.

    A rise of the objective (beyond rounding) means the step overshot: the
    parameters go back to where the epoch started, the momentum is forgotten
    (O'Donoghue & Candes' function restart) and ``lr`` halves. After an
    accepted step ``lr`` doubles back towards ``lr_max``, the rule's value
    (lowered to the last rejected step's half until the curvature is measured
    again), so one bad region does not slow the rest of the fit. A fresh metric
    starts from twice the last step accepted after halvings (:meth:`measured`).
    With this rule the objective never rises: ``loss_curve_`` is non-increasing.
    """

    SHRINK = 0.5
    GROW = 2.0
    # From the second rejection in a row, damp a dense or block preconditioner,
    # starting at this fraction of its diagonal and growing tenfold.
    DAMP_AFTER = 2
    DAMP_START = 1e-3
    DAMP_GROWTH = 10.0
    # Halvings in a row after which the step is hopeless: divergence.
    MAX_HALVINGS = 60

    def __init__(self):
        self.halvings = 0
        self.recovered = None

    def accept(self, f_new, f_old, noise):
        return f_new <= f_old + noise  # False for NaN too

    def rejected(self, state, epoch):
        state.buffers = []
        state.lr *= self.SHRINK
        # Until the next measurement, do not grow back to the step that failed.
        state.lr_max = min(state.lr_max, state.lr)
        P = state.preconditioner
        if P is not None and self.halvings >= self.DAMP_AFTER - 1:
            # The quadratic model misleads here (nearly flat directions far from
            # where it holds): Levenberg-Marquardt damping turns the direction
            # towards the scaled gradient, which some step length always lowers.
            state.preconditioner = P.damped(max(P.levenberg * self.DAMP_GROWTH, self.DAMP_START))
        self.halvings += 1
        if self.halvings > self.MAX_HALVINGS:
            raise DivergenceError(
                f"The objective rose after every step up to epoch {epoch}, although lr='auto' "
                f"shortened the step {self.MAX_HALVINGS} times (now lr={state.lr:.3g}); "
                "check the input for extreme values."
            )

    def accepted(self, state):
        self.recovered = state.lr if self.halvings else None
        self.halvings = 0
        if state.lr < state.lr_max:
            state.lr = min(state.lr_max, state.lr * self.GROW)

    def measured(self, state):
        """After a fresh metric's rule set ``state.lr``: where the last accepted step
        came after halvings, start from twice it rather than the rule's full step.

        Where the quadratic model keeps overshooting (standardised breast cancer,
        ``l1_ratio=1``, ``C=1e4``: nearly separable, proximal Newton re-measured
        every epoch), each fresh metric's full step was rejected twice, the second
        rejection damping the metric, before a quarter step was accepted: 1,000
        epochs and a ConvergenceWarning, 1.2e-4 above the optimum, where this
        rule converges in 75. ``lr_max`` stays the rule's: accepted steps grow back.
        """
        if self.recovered is not None:
            state.lr = min(state.lr, self.recovered * self.GROW)
            self.recovered = None


class RemeasureSchedule:
    """When to measure the curvature again.

    The preconditioner is measured at one point; as the fit sharpens the
    logistic curvature changes (it shrinks where predictions grow confident),
    and a stale ``P`` slows the fit down. A measurement costs ``ratio`` epochs
    (from the problem's shape: :func:`~sktorch_lr._curvature.measure_cost_ratio`).

    - Cheap measurements of the exact Hessian (``ratio <= NEWTON_RATIO``,
      small models, where the per-call overheads dominate both): measure
      after every epoch that did not converge fast. A fresh Hessian makes the
      step Newton's, whose quadratic convergence no stale metric matches at
      that price.
    - Costly ones (many classes or features), and any measurement of the
      class blocks (``kind="block"``), which only bound the Hessian: a fresh
      one gives no quadratic convergence to pay for one every epoch. Wait
      until the epochs since the last measurement cost ``1 / SHARE - 1``
      measurements, so curvature stays under ``SHARE`` of the fit's time.

    Never while the decrement falls ``FAST`` times or more per epoch: the
    current ``P`` works. ``share`` replaces ``SHARE`` (the batch's class
    blocks: :data:`~sktorch_lr._batch.BLOCK_SHARE`).
    """

    NEWTON_RATIO = 2.5
    SHARE = 0.2
    FAST = 0.1
    # Heavy ball on the class blocks (more than ConjugateStep.MAX_CLASSES classes)
    # starts each new metric from the rule's lr, which StepControl then halves
    # about this many times, each a rejected epoch (2,000 x 20 with 1,000
    # classes): part of what a measurement costs there.
    RELEARN_EPOCHS = 3.0

    def __init__(self, ratio, kind=None, share=SHARE):
        if kind != "block" and ratio <= self.NEWTON_RATIO:
            self.min_epochs = 1
        else:
            self.min_epochs = math.ceil(ratio * (1.0 / share - 1.0))
        self.since = 0

    def tick(self):
        self.since += 1

    def due(self, progress):
        return self.since >= self.min_epochs and not progress <= self.FAST

    def measured(self):
        self.since = 0


class SpectrumEstimate:
    """Learn the low end of ``P^-1 H``'s spectrum from the observed convergence.

    The step rule assumes the eigenvalues of ``P^-1 H`` lie in ``[low, high]``.
    A stale or approximate ``P`` (class blocks, the diagonal, a Hessian
    measured epochs ago) can leave directions flatter than ``low``, along
    which heavy ball converges at the rate ``rho`` it reaches there. Solving
    ``rho = heavy_ball_radius(lr, momentum, h)`` for ``h`` gives
    ``h = (1 + momentum - rho - momentum / rho) / lr``. When the decrement's
    contraction over ``WINDOW`` accepted epochs says ``h < SHRINK * low``,
    ``low`` becomes ``h`` and the momentum grows to match it.
    """

    WINDOW = 5
    SHRINK = 0.5

    def __init__(self):
        self.reset()

    def reset(self):
        self.decrements = []

    def observe(self, decrement, state, low):
        """A smaller ``low`` after an accepted epoch, or None."""
        self.decrements.append(decrement)
        if len(self.decrements) <= self.WINDOW:
            return None
        first, last = self.decrements[-self.WINDOW - 1], self.decrements[-1]
        if not (0 < last < first):
            return None
        rho = (last / first) ** (1.0 / self.WINDOW)
        m = state.momentum
        h = (1.0 + m - rho - m / rho) / state.lr
        if 0 < h < self.SHRINK * low:
            self.reset()
            return h
        return None


class ConjugateStep:
    """Momentum and step length chosen each epoch: nonlinear conjugate gradients.

    For a metric ``P`` that only bounds the Hessian (the per-class blocks,
    ``H <= 2P``), heavy ball needs the low end of ``P^-1 H``'s spectrum,
    which the softmax's nearly shared directions push towards zero as ``C``
    grows; :class:`SpectrumEstimate` learns it only slowly. Conjugate
    gradients need no spectrum: each epoch's momentum is Polak-Ribiere's
    ``beta = g^T (d - d_prev) / (g_prev^T d_prev)`` (``d = P^-1 g``; zero
    when negative, after a new metric and after a rejected step), and its
    ``lr`` the Newton step along the momentum buffer ``v = beta * v_prev + d``:
    ``lr = g^T v / (v^T H v)``, the curvature ``v^T H v`` from one product
    ``X v`` (:meth:`Problem.curvature_along`). The step itself is still
    ``torch.optim.SGD``'s, ``v = momentum * v + d; theta -= lr * v``, with
    these two numbers. On 1,797 x 64 digits (``C`` in ``np.logspace(-4, 4, 10)``)
    it needs 30-45% fewer epochs than heavy ball with the learned spectrum.
    A direction that does not descend (``g^T v <= 0``, or no positive
    curvature along it) falls back to ``beta = 0``.
    """

    # The metrics it runs on: "dense" is remeasured into Newton's step (or, when
    # costly, is close enough to H that heavy ball's rule is exact), and the
    # diagonal's lr comes from power iteration.
    KINDS = ("block",)
    # Up to this many classes. With more, each class's probabilities are small,
    # the coupling -p_k p_l that the blocks leave out is too, and the blocks are
    # nearly the Hessian, and the product X v and a softmax of every logit more
    # than double an epoch's cost: 2,000 x 20 with 1,000 classes took 42 epochs
    # against heavy ball's 59, in 1.3-2.0 s against 0.94 s.
    MAX_CLASSES = 32

    def __init__(self):
        self.restart()

    @classmethod
    def applies(cls, state, kind, n_outputs):
        """For full-batch ``lr="auto"`` fits, ``momentum="auto"``, a block metric, few classes."""
        return (
            state.adaptive
            and state.low is not None
            and not state.nesterov
            and kind in cls.KINDS
            and n_outputs <= cls.MAX_CLASSES
        )

    def restart(self):
        self.previous = None  # (g_prev^T d_prev, d_prev)
        self.metric = None  # the preconditioner the previous direction came from

    def choose_(self, params, state, problem, direction, halvings):
        """Set ``state``'s momentum, lr and buffers for the coming SGD step on ``direction``."""
        if state.preconditioner is not self.metric:
            self.restart()
            self.metric = state.preconditioner
        grads = [p.grad for p in params]
        beta = self.momentum(grads, direction)  # and remember this direction
        if not state.buffers:
            beta = 0.0  # no previous step to build on
        lr = None
        if beta > 0:
            v = [beta * b + d for b, d in zip(state.buffers, direction, strict=True)]
            lr = self.lr(_dot(grads, v), problem.curvature_along(params, v))
        if lr is None:
            beta = 0.0
            lr = self.lr(_dot(grads, direction), problem.curvature_along(params, direction))
        if lr is None:
            lr = state.lr_max  # the metric's own rule
        state.momentum = beta
        if beta == 0.0:
            state.buffers = []
        state.lr = lr * StepControl.SHRINK**halvings

    def momentum(self, grads, direction):
        """Polak-Ribiere's ``beta`` (at least 0) for the epoch about to start."""
        gd = _dot(grads, direction)
        beta = 0.0
        if self.previous is not None:
            gd_prev, d_prev = self.previous
            beta = self.polak_ribiere(gd, _dot(grads, d_prev), gd_prev)
        self.previous = (gd, _copies(direction))
        return beta

    @staticmethod
    def polak_ribiere(gd, g_dprev, gd_prev):
        """``max(0, (g^T d - g^T d_prev) / (g_prev^T d_prev))``, 0 where ``g_prev^T d_prev <= 0``.

        Numbers, or tensors (one ``beta`` per problem of a batch).
        """
        if isinstance(gd, torch.Tensor):
            beta = (gd - g_dprev) / gd_prev.clamp_min(1e-300)
            return torch.where(gd_prev > 0, beta.clamp_min(0.0), 0.0)
        return max(0.0, (gd - g_dprev) / gd_prev) if gd_prev > 0 else 0.0

    @staticmethod
    def lr(slope, curvature):
        """The Newton step ``slope / curvature`` along a descent direction, or None.

        With tensors, NaN marks the problems without one.
        """
        if isinstance(slope, torch.Tensor):
            step = slope / curvature
            valid = (slope > 0) & (curvature > 0) & torch.isfinite(step)
            return torch.where(valid, step, math.nan)
        if not (slope > 0 and curvature > 0 and math.isfinite(slope / curvature)):
            return None
        return slope / curvature


def _dot(a, b):
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


class LineSearch:
    """In Newton's mode, far from the optimum: ``lr`` minimises the objective along the step.

    A fresh dense metric makes the step ``P^-1 g`` Newton's, whose length 1 is
    right near the optimum (quadratic convergence) but not far from it: from
    zero the logistic curvature is at its largest, and it shrinks as the fit
    sharpens, so full Newton steps fall short. While the decrement is above
    :data:`MIN_DECREMENT`, each epoch's ``lr`` is the minimum of ``J`` along
    the direction (:meth:`Problem.line_minimum`), which costs passes over the
    logits, not over ``X``. The step is still ``torch.optim.SGD``'s with that
    ``lr`` (momentum 0, as Newton's mode has). On the lesson's data it cuts
    Newton's 4-14 epochs (``C`` from 1e-2 to 1e4) to 3-8; on standardised
    breast cancer (``C`` in ``np.logspace(-4, 4, 10)``) 3-15 to 3-10. Default
    small fits take 15-27% less time.
    """

    # The quadratic phase starts about here: below, Newton's step length is the minimum's.
    MIN_DECREMENT = 1e-3
    # Logits (rows x classes, times problems in a batch) at most. Small fits' epochs are
    # their per-call overheads, and a search costs a fraction of one; on large data its
    # float64 passes over the logits cost about an epoch and a copy of them (1M x 100
    # float32: 0.44 s -> 0.57 s and 17 -> 82 MB at the peak; the 50-problem CV of
    # 50,000 x 50: 0.54 s -> 0.86 s).
    MAX_LOGITS = 1 << 16
    # Safeguarded Newton steps on t at most, and the slope (relative to its start) that
    # is close enough to the minimum: lr need not be exact.
    ITERATIONS = 6
    SLOPE_TOL = 0.1

    @classmethod
    def minimise(cls, derivatives, slope0):
        """Safeguarded Newton on ``t`` for a convex function of ``t``, one per entry.

        ``derivatives(t) -> (slopes, curvatures)``, lists of floats like ``t``
        (one line per entry: the batch's problems, each of whose derivatives
        come from one pass over all logits); ``slope0`` lists minus the slopes
        at 0, all positive. Starts at Newton's ``t = 1``; keeps a bracket
        ``[lo, hi]`` of the minimum, and bisects it (or doubles ``t`` while it
        is open) where a Newton step leaves it. An entry stops once its slope
        is under :data:`SLOPE_TOL` of its ``slope0``. The bookkeeping is plain
        Python: a few numbers, where tensor calls would cost more than the
        passes over the logits.
        """
        b = len(slope0)
        t, lo, hi, going = [1.0] * b, [0.0] * b, [math.inf] * b, [True] * b
        for _ in range(cls.ITERATIONS):
            slopes, curvatures = derivatives(t)
            for j in range(b):
                slope, curvature = slopes[j], curvatures[j]
                if not going[j] or abs(slope) <= cls.SLOPE_TOL * slope0[j]:
                    going[j] = False
                    continue
                if slope < 0:
                    lo[j] = t[j]
                else:
                    hi[j] = t[j]
                step = t[j] - slope / curvature if curvature > 0 else math.nan
                if lo[j] < step < hi[j]:
                    t[j] = step
                else:  # outside the bracket: bisect it, or double while it is open
                    t[j] = 2.0 * t[j] if math.isinf(hi[j]) else 0.5 * (lo[j] + hi[j])
            if not any(going):
                break
        return t

    @classmethod
    def applies(cls, kind, newton_mode, n_logits):
        """For a dense metric remeasured every epoch, of at most :data:`MAX_LOGITS` logits
        (the single solver also asks for a full-batch ``lr="auto"`` fit without Nesterov)."""
        return kind == "dense" and newton_mode and n_logits <= cls.MAX_LOGITS

    @classmethod
    def wanted(cls, decrement, halvings, momentum):
        """Whether this epoch searches: far from the optimum, after an accepted step,
        without momentum. Numbers, or tensors (one answer per problem of a batch)."""
        return (decrement > cls.MIN_DECREMENT) & (halvings == 0) & (momentum == 0)

    def choose_(self, params, state, problem, direction, decrement, halvings):
        """Set ``state.lr`` for the coming step: the line's minimum, or the rule's."""
        if not self.wanted(decrement, halvings, state.momentum):
            return
        slope0 = _dot([p.grad for p in params], direction)
        if slope0 > 0:
            state.lr = problem.line_minimum(params, direction, slope0)


class StallStop:
    """Stop when no epoch makes progress in the working precision.

    Progress is a fall of the objective beyond rounding, or a new smallest
    decrement under ``IMPROVE`` times the previous best. ``PATIENCE``
    epochs in a row without either (float32 asked for a tiny ``tol``) stop
    the fit: more epochs would only spin.
    """

    PATIENCE = 10
    IMPROVE = 0.5

    def __init__(self):
        self.best_decrement = math.inf
        self.idle = 0

    def update(self, f_new, f_old, decrement, noise):
        progress = f_new < f_old - noise
        if decrement < self.IMPROVE * self.best_decrement:
            self.best_decrement = decrement
            progress = True
        self.idle = 0 if progress else self.idle + 1
        return self.idle >= self.PATIENCE


class BatchGrowth:
    """Mini-batches: double the batch when an epoch of them stops paying.

    An epoch counts as progress when it sets a new best objective (by more
    than rounding) and shrinks the Newton decrement by at least the factor
    :data:`CREEP`. Three epochs in a row without progress mean the iterate is
    rattling in the gradient noise, or creeping along at the stochastic step
    in a metric measured where the curvature was larger, where full-batch
    epochs in a fresh metric would do more: the batch doubles (Smith et al.,
    2018, "Don't decay the learning rate, increase the batch size"), until
    it is the full batch.
    """

    PATIENCE = 3
    # Full-batch epochs in a fresh metric shrink the decrement faster than this
    # (quadratically in Newton's mode). Epochs of mini-batches that shrink it
    # by less are creeping (wine at C=100 in batches of 64: a new best every
    # epoch, the decrement falling 1-3% an epoch, 1,000 epochs short of tol).
    CREEP = 0.8

    def __init__(self):
        self.best = math.inf
        self.stalls = 0

    def grow(self, f, noise, progress=0.0):
        """Whether to double the batch after an epoch that ended at objective ``f``.

        ``progress``: the decrement's ratio over the epoch (now / before).
        """
        if f < self.best - noise and progress <= self.CREEP:
            self.best = f
            self.stalls = 0
            return False
        self.best = min(self.best, f)
        self.stalls += 1
        if self.stalls >= self.PATIENCE:
            self.stalls = 0
            return True
        return False


# ------------------------------------------------------------- diagnostics


class _History:
    """Per-epoch diagnostics for ``track_gradients=True``.

    The objective, the gradient's norm (of the smooth part, at the epoch's end),
    the norm of the epoch's parameter change, the distance from the starting
    parameters, and the parameters themselves (the training's snapshots).
    ``to_model`` turns the solver's parameters into the model's.
    """

    def __init__(self, params, to_model):
        self.to_model = to_model
        self.start = self._model(params)
        self.before = None
        self.rows = {
            "objective": [],
            "grad_norm": [],
            "update_norm": [],
            "distance_from_init": [],
            "coef": [],
            "intercept": [],
        }

    def _model(self, params):
        copies = [p.detach().clone() for p in params]
        self.to_model(copies[0], copies[1] if len(copies) > 1 else None)
        return copies

    def epoch_start(self, params):
        self.before = self._model(params)

    def epoch_end(self, params, objective_value, grads):
        now = self._model(params)
        with torch.no_grad():
            grad_sq = sum(float((g * g).sum()) for g in grads)
            upd_sq = sum(float(((p - b) ** 2).sum()) for p, b in zip(now, self.before, strict=True))
            dist_sq = sum(float(((p - s) ** 2).sum()) for p, s in zip(now, self.start, strict=True))
        self.rows["objective"].append(objective_value)
        self.rows["grad_norm"].append(math.sqrt(grad_sq))
        self.rows["update_norm"].append(math.sqrt(upd_sq))
        self.rows["distance_from_init"].append(math.sqrt(dist_sq))
        self.rows["coef"].append(now[0].cpu().double().numpy().copy())
        if len(now) > 1:
            self.rows["intercept"].append(now[1].cpu().double().numpy().copy())


# ---------------------------------------------------------------- the loop


def _gradient_measure(grads, direction):
    """``(decrement, max|g|)`` in one device-to-host transfer.

    ``decrement`` is ``sqrt(g^T P^-1 g)`` when ``direction = P^-1 g`` is given.
    """
    gmax = torch.stack(torch._foreach_norm(grads, math.inf)).max()
    if direction is None:
        return math.nan, float(gmax)
    if grads[0].dtype != torch.float64:
        grads = [g.double() for g in grads]
        direction = [d.double() for d in direction]
        gmax = gmax.double()
    dec_sq = sum(t.sum() for t in torch._foreach_mul(grads, direction))
    dec_sq, gmax = torch.stack([dec_sq, gmax]).tolist()
    return math.sqrt(max(dec_sq, 0.0)), gmax


def solve(
    params,
    problem,
    state,
    *,
    max_iter,
    tol,
    batch_size,
    generator,
    check_convergence=True,
    track_gradients=False,
    preconditioner_kind=None,
    measure_ratio=1.0,
    retune=None,
    callbacks=None,
    verbose=0,
):
    """Run up to ``max_iter`` epochs of momentum SGD on ``params`` in place.

    Parameters
    ----------
    params : list of leaf Tensors
        ``[coef]`` or ``[coef, intercept]`` in the problem's parametrisation,
        with ``requires_grad=True``.
    problem : Problem
    state : SolverState
        Step size, momentum, preconditioner and momentum buffers; updated in place.
    max_iter : int
        Number of epochs at most.
    tol : float
        With a preconditioner: stop once the Newton decrement
        ``sqrt(g^T P^-1 g)`` is at most ``tol``. Without one (a float ``lr``):
        once the gradient's largest entry is. ``g`` is the objective's gradient
        (minimum-norm subgradient for the L1 part).
    batch_size : int or None
        ``None`` or ``>= n_samples`` means full batch. With ``state.adaptive``
        it is the starting size: :class:`BatchGrowth` doubles it.
    generator : torch.Generator
        The only source of randomness (the mini-batch order).
    preconditioner_kind : str or None
        For ``state.adaptive``: the kind :class:`RemeasureSchedule` measures again.
    measure_ratio : float
        The cost of one curvature measurement in epochs.
    retune : callable or None
        ``(state, stochastic=False, low=None) -> None``:
        adopts the step rule for a newly measured ``state.preconditioner``, or
        for a new low end ``low`` of its spectrum (:class:`SpectrumEstimate`).
    callbacks : sktorch_lr._callbacks.FitCallbacks or None
        scikit-learn callback hooks around each epoch; one may stop training.

    Returns
    -------
    SolveResult

    Raises
    ------
    DivergenceError
        If the objective becomes non-finite or grows far past its start.
    """
    data = problem.data
    n = data.n_samples
    n_outputs = params[0].shape[0]
    full_batch = batch_size is None or batch_size >= n
    S = data.weight_sum
    history = _History(params, problem.to_model) if track_gradients else None
    adaptive = state.adaptive
    eps = torch.finfo(data.dtype).eps  # the parameters' precision
    control = StepControl()
    conjugate = line_search = None
    if problem.rows_at_hand and ConjugateStep.applies(state, preconditioner_kind, n_outputs):
        conjugate = ConjugateStep()
    if preconditioner_kind == "block" and conjugate is None:
        measure_ratio += RemeasureSchedule.RELEARN_EPOCHS
    schedule = RemeasureSchedule(measure_ratio, preconditioner_kind)
    stall = StallStop()
    growth = BatchGrowth()
    spectrum = SpectrumEstimate()
    newton_mode = schedule.min_epochs == 1
    n_logits = n * n_outputs
    if (
        problem.rows_at_hand
        and state.adaptive
        and not state.nesterov
        and not problem.penalty.l1  # a search along the direction ignores the prox
        and LineSearch.applies(preconditioner_kind, newton_mode, n_logits)
    ):
        line_search = LineSearch()
    problem.keep_logits = conjugate is not None or line_search is not None
    moved = False  # whether the parameters moved since the preconditioner was measured

    def direction_of(grads):
        P = state.preconditioner
        return None if P is None else problem.project_(P.direction(grads))

    def measure_of(grads, direction):
        # The decrement is measured in the undamped metric (StepControl's damping
        # shortens steps, it must not shrink the stopping measure), and with an L1
        # part it is that of the optimality gradient.
        P = state.preconditioner
        if prox_in_metric(problem.penalty, P):
            # On the solution's face (DensePreconditioner.free_decrement).
            decrement = P.undamped().free_decrement(grads, params[0].detach())
            return decrement, _gradient_measure(grads, None)[1]
        if P is not None and (P.levenberg or problem.penalty.l1):
            direction = problem.project_(P.undamped().direction(grads))
        return _gradient_measure(grads, direction)

    def remeasure(grads):
        # A fresh metric at the parameters (and the step rule it implies): where it
        # was measured, and the direction and decrement of ``grads`` in it.
        nonlocal measured_at, moved
        state.preconditioner = problem.measure(params, preconditioner_kind)
        if retune is not None:
            # Between mini-batches (a convergence check confirmed in a fresh metric),
            # the stochastic rule: the full-batch one takes Newton steps on a batch.
            retune(state, stochastic=not full_batch)
        control.measured(state)
        measured_at = _copies(params)
        moved = False
        schedule.measured()
        direction = direction_of([p.grad for p in params])
        return (direction, *measure_of(grads, direction))

    problem.centre_classes_(params)
    zero_grad_(params)
    f = float(problem.evaluate(params))
    _check_finite(f, state, epoch=0)
    f_start = f
    # The logits where the preconditioner was measured (a full fit measures it here).
    measured_at = _copies(params) if adaptive and full_batch else None
    grads = problem.optimality_gradients(params)
    direction = direction_of([p.grad for p in params])
    decrement, grad_max = measure_of(grads, direction)
    loss_curve = []
    converged = stopped = stalled = False
    epoch = 0
    for epoch in range(1, max_iter + 1):
        if callbacks is not None:
            callbacks.epoch_begin(params)
        if history is not None:
            history.epoch_start(params)
        if full_batch:
            before = _copies(params) if adaptive else None
            if conjugate is not None:
                conjugate.choose_(params, state, problem, direction, control.halvings)
            elif line_search is not None:
                line_search.choose_(params, state, problem, direction, decrement, control.halvings)
            step_(params, state, problem.penalty, direction)
            if conjugate is not None and not state.buffers:
                # A step with momentum 0 keeps no buffer; the next one builds on it.
                state.buffers = [d.detach().clone() for d in direction]
        else:
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                Xb, yb, swb = data.batch(idx)
                zero_grad_(params)
                problem.evaluate(params, (Xb, yb, swb, S * len(idx) / n))
                step_(params, state, problem.penalty, direction_of([p.grad for p in params]))
        f_old = f
        noise = NOISE_ULPS * problem.sum_eps * max(abs(f_old), 1e-30)
        zero_grad_(params)
        f_new = float(problem.evaluate(params))
        accepted = True
        if adaptive and full_batch and not control.accept(f_new, f_old, noise):
            accepted = False
            _restore_(params, before)
            control.rejected(state, epoch)
            spectrum.reset()
            if conjugate is not None:
                conjugate.restart()
            zero_grad_(params)
            f_new = float(problem.evaluate(params))
        elif adaptive and full_batch:
            control.accepted(state)
        moved = moved or accepted
        f = f_new
        _check_finite(f, state, epoch, f_start)
        grads = problem.optimality_gradients(params)
        direction = direction_of([p.grad for p in params])
        previous_decrement = decrement
        decrement, grad_max = measure_of(grads, direction)
        loss_curve.append(f)
        if history is not None:
            history.epoch_end(params, f, [p.grad for p in params])
        if verbose >= 2 or (verbose and (epoch == 1 or epoch % 20 == 0)):
            print(
                f"Epoch {epoch}: objective {f:.10g}, decrement {decrement:.3e}, "
                f"max|grad| {grad_max:.3e}, lr {state.lr:.4g}, momentum {state.momentum:.4g}"
            )
        if callbacks is not None and callbacks.epoch_end(params):
            stopped = True
            break
        measure = decrement if state.preconditioner is not None else grad_max
        if check_convergence and measure <= tol:
            if not adaptive or not moved:
                converged = True
                break
            # The preconditioner was measured before the last step: a stale metric can
            # understate the decrement. Where the logits moved little since, a bound
            # of the fresh decrement says enough; otherwise confirm with a fresh one.
            bound = None
            if full_batch and measured_at is not None and problem.rows_at_hand:
                drift = problem.drift_since(params, measured_at)
                bound = stale_decrement_bound(decrement, state.preconditioner.kind, drift)
            if bound is not None and bound <= tol:
                converged = True
                break
            direction, decrement, grad_max = remeasure(grads)
            if decrement <= tol:
                converged = True
                break
        if not adaptive:
            continue
        if full_batch and check_convergence and stall.update(f, f_old, decrement, noise):
            resolution = max(tol, math.sqrt(eps))
            if decrement > resolution and problem.refine_precision():
                # Short of tol, and of what the dtype can resolve: the float32 sums'
                # rounding is the floor. Go on with float64 sums, from a fresh
                # gradient and without the momentum built on noise. The objective's
                # rounding is float64's from now on: falls that float32 sums could not
                # resolve count as progress.
                stall = StallStop()
                state.buffers = []
                if conjugate is not None:
                    conjugate.restart()
                zero_grad_(params)
                f = float(problem.evaluate(params))
                grads = problem.optimality_gradients(params)
                if full_batch and state.preconditioner is not None:
                    # The steps float32's noise rejected left lr halved and the metric
                    # damped towards the gradient (steps that round away in the
                    # parameters): a fresh metric and the rule's step.
                    control = StepControl()
                    spectrum.reset()
                    direction, decrement, grad_max = remeasure(grads)
                else:
                    direction = direction_of([p.grad for p in params])
                    decrement, grad_max = measure_of(grads, direction)
                continue
            # No step lowers the objective in this precision. Below sqrt(eps) the
            # decrement itself is rounding: converged as far as the dtype allows.
            stalled = True
            converged = decrement <= resolution
            break
        progress = decrement / previous_decrement if previous_decrement > 0 else 0.0
        if not full_batch and growth.grow(f, noise, progress):
            batch_size *= 2
            full_batch = batch_size >= n
            if full_batch:
                # The full-batch rule from here on.
                state.buffers = []
                direction, decrement, grad_max = remeasure(grads)
                continue
        schedule.tick()
        if full_batch and accepted and schedule.due(progress):
            spectrum.reset()
            direction, decrement, grad_max = remeasure(grads)
            if check_convergence and decrement <= tol:
                # Below tol in a metric measured here: no further step is needed.
                converged = True
                break
        elif full_batch and accepted and conjugate is None and retune and state.low is not None:
            low = spectrum.observe(decrement, state, state.low)
            if low is not None:
                retune(state, low=low)
    zero_grad_(params)
    return SolveResult(
        n_iter=epoch,
        loss_curve=loss_curve,
        converged=converged,
        stopped=stopped,
        stalled=stalled,
        decrement=decrement if state.preconditioner is not None else grad_max,
        history=None if history is None else history.rows,
    )


def _copies(tensors):
    return [t.detach().clone() for t in tensors]


def _row_blocks(X):
    """``(rows, X[rows])`` in blocks of :data:`EVAL_CHUNK_ROWS` rows; sparse ``X`` whole."""
    n = X.shape[0]
    if X.layout == torch.sparse_coo or n <= EVAL_CHUNK_ROWS:
        yield slice(0, n), X
        return
    for start in range(0, n, EVAL_CHUNK_ROWS):
        rows = slice(start, start + EVAL_CHUNK_ROWS)
        yield rows, X[rows]


def _restore_(params, saved):
    with torch.no_grad():
        for p, v in zip(params, saved, strict=True):
            p.copy_(v)


def _check_finite(f, state, epoch, f_start=None):
    exploded = f_start is not None and f > 1e3 * (abs(f_start) + 1.0)
    if math.isfinite(f) and not exploded:
        return
    what = "non-finite" if not math.isfinite(f) else f"{f:.3g}, far above its start {f_start:.3g}"
    raise DivergenceError(
        f"Training diverged at epoch {epoch}: the objective is {what} with "
        f"learning rate lr={state.lr:.4g} and momentum={state.momentum:.4g}. "
        "Use a smaller lr (or lr='auto', which derives it from the curvature), "
        "or standardise the features."
    )
