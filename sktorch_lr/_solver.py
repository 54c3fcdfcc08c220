"""The momentum-SGD training loop, as plain functions.

One step is the lesson's: forward, loss, backward, step, zero_grad. The
gradient comes from autograd (``loss.backward()``); the step has the exact
semantics of :class:`torch.optim.SGD` (heavy ball, ``dampening=0``, optional
Nesterov), written out here so that a fit does not pay ``torch.optim``'s
first-call import of ``torch._dynamo``; ``tests/test_solver.py`` checks it
step for step against ``torch.optim.SGD``. The L1 part of the objective is
applied after the step by soft-thresholding (a proximal step), so
coefficients become exactly zero.

An epoch is one pass over the data: one step for full batch, one step per
mini-batch otherwise. After each epoch the full objective and its gradient are
evaluated (for full batch this is the evaluation the next step uses anyway);
that value goes to ``loss_curve_`` and the stopping rule reads the gradient.
"""

import math
from dataclasses import dataclass, field

import torch

from ._objective import objective, optimality_gradient, penalty_term, soft_threshold_

# lr="auto", full batch: the first epoch after which the curvature is measured
# again, the factor between measurements, and the most the step may grow per
# measurement.
FIRST_REMEASURE = 1
REMEASURE_GROWTH = 2
MAX_LR_GROWTH = 4.0
# lr="auto": an objective that climbs back more than this fraction of the way
# from the best value to the starting one is reverted to the best point.
REVERT_FRACTION = 0.5
# Full-data evaluations of dense X go through in blocks of this many rows.
EVAL_CHUNK_ROWS = 32_768


class DivergenceError(ValueError):
    """Training diverged: the objective became non-finite or exploded."""


@dataclass
class SolverState:
    """What survives between epochs and between ``partial_fit`` calls."""

    lr: float
    momentum: float
    nesterov: bool
    adaptive: bool  # lr="auto": restart momentum / halve lr when the objective rises
    buffers: list = field(default_factory=list)
    lr_halvings: int = 0
    partial_fit_calls: int = 0


@dataclass
class SolveResult:
    n_iter: int
    loss_curve: list
    converged: bool
    stopped: bool = False  # a callback asked to stop
    history: dict | None = None


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


def proximal_l1_(coef, state, l1, coef_before):
    """Soft-threshold ``coef`` after a step, and keep the momentum consistent.

    The momentum buffer is reset to the step actually taken,
    ``(coef_before - coef) / lr`` (the inertial proximal method, iPiano), so a
    coefficient held at zero by the penalty does not gather momentum.
    """
    with torch.no_grad():
        soft_threshold_(coef, state.lr * l1)
        if state.buffers:
            state.buffers[0].copy_((coef_before - coef) / state.lr)


def zero_grad_(params):
    for p in params:
        p.grad = None


def _evaluate(params, fit_intercept, X, y, sample_weight, penalty, normalizer):
    """Forward + backward of the smooth objective; returns the objective (with L1).

    Dense data taller than :data:`EVAL_CHUNK_ROWS` go through in row blocks
    whose gradients autograd accumulates into ``.grad``: the same sum, with
    the per-sample temporaries (logits, loss terms, their gradients) of one
    block instead of the whole data set alive at a time.
    """
    coef = params[0]
    intercept = params[1] if fit_intercept else None
    n = X.shape[0]
    if X.layout == torch.sparse_coo or n <= EVAL_CHUNK_ROWS:
        loss = objective(
            coef, intercept, X, y, sample_weight, penalty, normalizer=normalizer, include_l1=False
        )
        loss.backward()
    else:
        loss = 0.0
        no_penalty = penalty._replace(l2=0.0, l1=0.0)
        for start in range(0, n, EVAL_CHUNK_ROWS):
            rows = slice(start, start + EVAL_CHUNK_ROWS)
            part = objective(
                coef,
                intercept,
                X[rows],
                y[rows],
                None if sample_weight is None else sample_weight[rows],
                penalty if start == 0 else no_penalty,  # the penalty once
                normalizer=normalizer,
                include_l1=False,
            )
            part.backward()
            loss = loss + part.detach()
    if not penalty.l1:
        return loss.detach()
    with torch.no_grad():
        return loss + penalty_term(coef, penalty._replace(l2=0.0))


def _read_back(objective_value, params, penalty, with_gradient):
    """The objective and the gradient's largest entry, in one device-to-host transfer.

    The only synchronisation of an epoch (on a GPU the rest stays on the device).
    """
    if not with_gradient:
        return float(objective_value), math.nan
    grads = [optimality_gradient(params[0].grad, params[0].detach(), penalty.l1)]
    grads += [p.grad for p in params[1:]]
    grad_max = torch.stack(torch._foreach_norm(grads, math.inf)).max()
    f, g = torch.stack([objective_value.to(grad_max.dtype), grad_max]).tolist()
    return f, g


class _History:
    """Per-epoch diagnostics for ``track_gradients=True``.

    The objective, the gradient's norm (of the smooth part, at the epoch's end),
    the norm of the epoch's parameter change, the distance from the starting
    parameters, and the parameters themselves (the training's snapshots).
    """

    def __init__(self, params):
        self.start = [p.detach().clone() for p in params]
        self.before = None
        self.rows = {
            "objective": [],
            "grad_norm": [],
            "update_norm": [],
            "distance_from_init": [],
            "coef": [],
            "intercept": [],
        }

    def epoch_start(self, params):
        self.before = [p.detach().clone() for p in params]

    def epoch_end(self, params, objective_value):
        with torch.no_grad():
            grad_sq = sum(float((p.grad * p.grad).sum()) for p in params)
            upd_sq = sum(
                float(((p - b) ** 2).sum()) for p, b in zip(params, self.before, strict=True)
            )
            dist_sq = sum(
                float(((p - s) ** 2).sum()) for p, s in zip(params, self.start, strict=True)
            )
        self.rows["objective"].append(objective_value)
        self.rows["grad_norm"].append(math.sqrt(grad_sq))
        self.rows["update_norm"].append(math.sqrt(upd_sq))
        self.rows["distance_from_init"].append(math.sqrt(dist_sq))
        self.rows["coef"].append(params[0].detach().cpu().double().numpy().copy())
        if len(params) > 1:
            self.rows["intercept"].append(params[1].detach().cpu().double().numpy().copy())


def solve(
    params,
    data,
    penalty,
    state,
    *,
    fit_intercept,
    max_iter,
    tol,
    batch_size,
    generator,
    check_convergence=True,
    track_gradients=False,
    remeasure=None,
    callbacks=None,
    verbose=0,
):
    """Run up to ``max_iter`` epochs of momentum SGD on ``params`` in place.

    Parameters
    ----------
    params : list of leaf Tensors
        ``[coef]`` or ``[coef, intercept]``, with ``requires_grad=True``.
    data : sktorch_lr._data.TrainingData
    penalty : sktorch_lr._objective.Penalty
    state : SolverState
        Step size, momentum and the momentum buffers; updated in place.
    max_iter : int
        Number of epochs at most.
    tol : float
        Stop once the largest absolute entry of the objective's gradient
        (minimum-norm subgradient for the L1 part) is at most ``tol``.
    batch_size : int or None
        ``None`` or ``>= n_samples`` means full batch. With ``state.adaptive``
        it is the starting size: it doubles whenever the objective stalls.
    generator : torch.Generator
        The only source of randomness (the mini-batch order).
    callbacks : sktorch_lr._callbacks.FitCallbacks or None
        scikit-learn callback hooks around each epoch; one may stop training.
    remeasure : callable or None
        ``params -> (lr, momentum)``: the full-batch rule from the curvature at
        ``params`` (``lr="auto"``). In full batch it is called after epochs 1,
        2, 4, 8, ... and when growing mini-batches reach the full batch. The
        curvature of a logistic loss shrinks as the fit sharpens (the lesson's
        largest eigenvalue falls 40-fold from start to optimum), so the step
        size and momentum follow it; the momentum buffer is rescaled so that
        the velocity ``lr * buffer`` carries over.

    Returns
    -------
    SolveResult

    Raises
    ------
    DivergenceError
        If the objective becomes non-finite or grows far past its start.
    """
    n = data.n_samples
    full_batch = batch_size is None or batch_size >= n
    X, y, sw = data.full()
    S = data.weight_sum
    history = _History(params) if track_gradients else None

    zero_grad_(params)
    f = float(_evaluate(params, fit_intercept, X, y, sw, penalty, S))
    _check_finite(f, state, epoch=0)
    f_start = previous = f
    loss_curve = []
    converged = stopped = False
    rises = []  # full batch: epochs of the recent rises of the objective
    stalls = 0  # mini-batches: epochs in a row without a new best
    best = f
    best_params = [p.detach().clone() for p in params] if state.adaptive else None
    # Rises smaller than this are rounding, not a sign of a too-long step.
    noise = 16 * torch.finfo(data.dtype).eps
    next_remeasure = FIRST_REMEASURE
    epoch = 0
    for epoch in range(1, max_iter + 1):
        if callbacks is not None:
            callbacks.epoch_begin(params)
        if history is not None:
            history.epoch_start(params)
        if full_batch:
            _step(params, state, penalty)
        else:
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                Xb, yb, swb = data.batch(idx)
                zero_grad_(params)
                _evaluate(params, fit_intercept, Xb, yb, swb, penalty, S * len(idx) / n)
                _step(params, state, penalty)
        zero_grad_(params)
        # With tol=0 nothing reads the gradient's size: skip it unless it is printed.
        want_grad = (check_convergence and tol > 0) or bool(verbose)
        f_t = _evaluate(params, fit_intercept, X, y, sw, penalty, S)
        f, grad_max = _read_back(f_t, params, penalty, want_grad)
        ceiling = best + REVERT_FRACTION * (f_start - best) + noise * max(abs(f_start), 1.0)
        if state.adaptive and not f <= ceiling:
            # Back more than halfway from the best value to the start (or
            # non-finite): the step was far too long for where the iterate
            # went. Go back to the best point, forget the momentum and quarter
            # the step.
            _restore_(params, best_params)
            state.buffers = []
            _halve_lr(state, epoch, factor=0.25)
            zero_grad_(params)
            f_t = _evaluate(params, fit_intercept, X, y, sw, penalty, S)
            f, grad_max = _read_back(f_t, params, penalty, want_grad)
        _check_finite(f, state, epoch, f_start)
        loss_curve.append(f)
        if history is not None:
            history.epoch_end(params, f)
        if verbose >= 2 or (verbose and (epoch == 1 or epoch % 20 == 0)):
            print(
                f"Epoch {epoch}: objective {f:.8g}, max|grad| {grad_max:.3e}, "
                f"lr {state.lr:.4g}, momentum {state.momentum:.4g}"
            )
        if callbacks is not None and callbacks.epoch_end(params):
            stopped = True
            break
        if check_convergence and grad_max <= tol:
            converged = True
            break
        if state.adaptive and full_batch:
            rises = _react_full_batch(state, f, previous, rises, epoch, noise)
        elif state.adaptive:
            stalls, grow = _react_mini_batch(f, best, stalls, noise)
            if grow:
                batch_size *= 2
                if batch_size >= n:
                    full_batch = True
                    if remeasure is not None:
                        retune(state, *remeasure(params))
                        next_remeasure = 2 * epoch
        previous = f
        if f < best:
            best = f
            if state.adaptive:
                best_params = [p.detach().clone() for p in params]
        if remeasure is not None and full_batch and epoch == next_remeasure:
            lr, momentum = remeasure(params)
            # Once the curvature has settled (the step changes by under 10%),
            # measure it four times less often.
            settled = abs(lr - state.lr) < 0.1 * state.lr
            next_remeasure *= REMEASURE_GROWTH**3 if settled else REMEASURE_GROWTH
            retune(state, lr, momentum)
    zero_grad_(params)
    return SolveResult(
        n_iter=epoch,
        loss_curve=loss_curve,
        converged=converged,
        stopped=stopped,
        history=None if history is None else history.rows,
    )


def _step(params, state, penalty):
    coef = params[0]
    before = coef.detach().clone() if penalty.l1 else None
    momentum_step_(params, state)
    if penalty.l1:
        proximal_l1_(coef, state, penalty.l1, before)


def _react_full_batch(state, f, previous, rises, epoch, noise):
    """``lr="auto"``, full batch: react to the objective ``f`` after ``epoch``.

    ``rises`` holds the epochs of the recent rises; the updated list is
    returned. A rise restarts the momentum (O'Donoghue & Candes' function
    restart); three rises within six epochs mean the step is too long for this
    region (a steady rise, or the period-two rattle of a step past ``2 / L``),
    so ``lr`` is halved.
    """
    rises = [e for e in rises if e > epoch - 6]
    if f - previous <= noise * max(abs(previous), 1.0):
        return rises
    state.buffers = []
    rises.append(epoch)
    if len(rises) >= 3:
        _halve_lr(state, epoch)
        return []
    return rises


def _react_mini_batch(f, best, stalls, noise):
    """``lr="auto"``, mini-batches: ``(stalls, grow_batch)`` after an epoch.

    ``stalls`` counts the epochs in a row without a new best. Three mean the
    iterate is rattling in the gradient noise, so the batch doubles (Smith et
    al., 2018, "Don't decay the learning rate, increase the batch size"),
    which lowers the noise the way a smaller step would, until it is the full
    batch.
    """
    if f - best <= -noise * max(abs(best), 1.0):
        return 0, False
    stalls += 1
    if stalls >= 3:
        return 0, True
    return stalls, False


def retune(state, lr, momentum):
    """Adopt a new step size and momentum, keeping the velocity ``lr * buffer``.

    The step size grows at most fourfold per remeasurement: the curvature is
    measured at one point, and a step much longer than the one that worked
    so far can land where the loss is curved more sharply.
    """
    lr = min(lr, MAX_LR_GROWTH * state.lr)
    with torch.no_grad():
        if state.buffers:
            torch._foreach_mul_(state.buffers, state.lr / lr)
    state.lr, state.momentum = lr, momentum


def _restore_(params, saved):
    with torch.no_grad():
        for p, v in zip(params, saved, strict=True):
            p.copy_(v)


def _halve_lr(state, epoch, factor=0.5):
    state.lr *= factor
    state.lr_halvings += 1
    if state.lr_halvings > 40:
        raise DivergenceError(
            f"The objective kept rising at epoch {epoch} although lr='auto' halved the "
            f"learning rate 40 times (now lr={state.lr:.3g}); check the input for extreme values."
        )


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
