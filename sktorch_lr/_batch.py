"""Many logistic regressions on one ``X`` at once: the folds x Cs of a cross-validation.

``B`` problems share the rows of ``X``; problem ``p`` has its own sample
weights ``w_p`` (zero on the rows it holds out), its own L2 strength and its
own parameters. One epoch of all of them is one matrix product
``X @ W.T``, ``W`` holding every problem's coefficients as rows (a GEMM
instead of ``B`` matrix-vector products), then one autograd backward of the
sum of their objectives, which gives each problem its own gradient (the
problems share no parameter).

The step is the single solver's (:mod:`sktorch_lr._solver`) made per problem:
momentum SGD with ``torch.optim.SGD``'s semantics on the preconditioned
gradient ``P_p^-1 g_p``, in the centred parametrisation, with

- its own ``lr``, momentum and spectrum range (:func:`~sktorch_lr._curvature.step_rule`),
- :class:`~sktorch_lr._solver.StepControl`'s rule: a step that raises the
  problem's objective is taken back, halved, then Levenberg-Marquardt damped,
- :class:`~sktorch_lr._solver.SpectrumEstimate`'s rule for a stale metric, or,
  on block metrics of few classes, :class:`~sktorch_lr._solver.ConjugateStep`'s:
  each epoch's momentum and ``lr`` per problem from conjugate gradients, the
  curvature along each problem's buffer from one more product ``X V`` and the
  logits the last evaluation kept,
- in Newton's mode, :class:`~sktorch_lr._solver.LineSearch`'s: far from the
  optimum each problem's ``lr`` is the minimum along its Newton step, from one
  more product ``X D`` and the kept logits,
- :class:`~sktorch_lr._solver.StallStop`'s rule, and its own stop on the
  Newton decrement ``sqrt(g^T P^-1 g) <= tol``. A problem that stops leaves
  the batch: later epochs multiply only the columns still training.

The constants are those of the single solver's rule classes, read from them,
so both solvers change together. The curvature is measured for all problems in
one more matrix product: the per-sample logit curvatures of every problem (by
autograd, :func:`~sktorch_lr._curvature.link_jacobian`) times the products
``x_ij x_il`` of each row, which no problem changes.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._base import _work
from ._curvature import (
    CHUNK_NUMBERS,
    CURVATURE_MAX_ROWS,
    EPOCH_OVERHEAD,
    MADDS_PER_UNIT,
    MEASURE_OVERHEAD,
    _marquardt,
    cholesky_solve,
    choose_preconditioner,
    damped_cholesky,
    link_jacobian,
    logit_curvature_diagonal,
    logit_derivatives_along,
    logit_drift,
    logit_variance,
    preconditioned_spectrum,
    stale_decrement_bound,
    step_rule,
    upper_products,
)
from ._data import as_tensor, constant_columns, vector_to_tensor
from ._objective import linear_logits, penalty_strengths
from ._solver import (
    NOISE_ULPS,
    ConjugateStep,
    DivergenceError,
    LineSearch,
    RemeasureSchedule,
    SpectrumEstimate,
    StallStop,
    StepControl,
)
from ._threads import threads_for

# The batch's cost model (batch_measure_ratio), in the units of _curvature's:
# the triangle product of a measurement runs about twice as many multiply-adds
# per unit as the epoch's products, and each logit costs about this many units
# of softmax and its gradient per epoch.
TRIANGLE_MADDS_PER_UNIT = 8.0
# The share of the batch's time its class-block metrics may spend being measured
# (RemeasureSchedule.SHARE for the others). A stale block metric costs more than
# measuring it: the CV of standardised digits (50 problems, a measurement worth
# 4.6 epochs) took 1.64 s remeasuring every 19 epochs (a fifth of the time) and
# 1.31-1.41 s every 5 (half), the slowest problem 104 epochs against 50; every
# 8 and 12 epochs 1.29 and 1.43 s, in Newton's mode (every epoch) 2.1 s.
BLOCK_SHARE = 0.5
LOGIT_UNITS = 10.0
# Multinomial dense metrics stay in Newton's mode while a measurement costs at most this
# many epochs: Newton's 10-20 epochs at 1 + ratio each against the 80-150 epochs of a
# metric measured on the schedule's budget (2,500 x 15 with 12 classes: 84 epochs).
DENSE_NEWTON_MAX_RATIO = 6.0
# The batch measures curvature on this many rows per column of [X, 1] (at most
# CURVATURE_MAX_ROWS), and on all rows up to BATCH_CURVATURE_MIN_ROWS: see
# batch_curvature_rows.
ROWS_PER_COLUMN = 128
BATCH_CURVATURE_MIN_ROWS = 4096
# The row products x_ij x_il of the curvature rows of dense X are kept between
# measurements up to this many numbers in all (128 MB in float64).
PRODUCTS_CACHE_NUMBERS = 1 << 24


class BatchProblem:
    """``B`` smooth L2-penalised logistic objectives on the same ``X``.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features), dense or sparse COO
    y : Tensor of shape (n_samples,)
        0./1. in ``X``'s dtype for the binary model, class indices otherwise.
    weights : Tensor of shape (B, n_samples)
        ``s_pi``: problem ``p``'s weight of row ``i`` (0 for rows it does not train on).
    l2 : Tensor of shape (B,)
        ``1 / (C_p S_p)``, 0 for ``C = inf`` (:func:`~sktorch_lr._objective.penalty_strengths`).
    n_outputs : int
        1 (sigmoid) or the number of classes (softmax).
    fit_intercept : bool

    The parameters are ``coef`` ``(B, K, d)`` and ``intercept`` ``(B, K)`` in
    the centred parametrisation: problem ``p``'s model intercept is
    ``intercept_p - coef_p @ mean_p``, ``mean_p`` its weighted feature mean.
    """

    def __init__(self, X, y, weights, l2, *, n_outputs, fit_intercept):
        self.X, self.y = X, y
        # Stored by row, (n_samples, B), as the logits (n, B, K) are: the data terms
        # weigh them in place (in the loss's own kernel for the binary model), where
        # the (B, n) layout made a transposed product and a strided copy of every
        # evaluation (the CV of 50,000 x 50: 0.40-0.42 s against 0.44-0.50 s).
        self.row_weights = weights.T.contiguous()
        self.weight_sum = weights.sum(1)
        if not bool((self.weight_sum > 0).all()):
            raise ValueError("A training fold has sample weights that sum to zero.")
        self._l2_exact = l2
        self.l2 = l2.to(X.dtype)
        # The parameters' dtype; X's becomes float64 after refine_precision.
        self.param_dtype = X.dtype
        self.n_outputs = n_outputs
        self.fit_intercept = fit_intercept
        self.n_problems = weights.shape[0]
        self.n_samples, self.n_features = X.shape
        self.mean = None
        self.keep_logits = False  # for ConjugateStep's curvature_along
        self.logits = None  # of the last evaluation, when it was one block of rows
        # The row products x_ij x_il of the curvature rows, which no step changes.
        self._products = {}
        # Constant columns (with an intercept, zero once centred): as for one fit
        # (Problem.fix_constant_columns_), their means are their values exactly and
        # their coefficients see the penalty alone (fix_constant_columns_ below).
        self.constant = None
        if fit_intercept:
            if X.layout == torch.sparse_coo:
                sums = torch.sparse.mm(X.t(), weights.T).T
            else:
                sums = weights @ X
            self.mean = sums / self.weight_sum[:, None]
            self.constant, values = constant_columns(X)
        # The curvature rows' products are taken about the problems' common centre, so
        # that each problem's own centring (_centre_) is a shift of a fold's fluctuation,
        # not of the features' offsets: about zero, columns a thousand spreads away lose
        # their spread to cancellation (a measured curvature below zero).
        self.product_shift = None if self.mean is None else self.mean.to(torch.float64).mean(0)
        if self.constant is not None:
            self.mean[:, self.constant] = values[self.constant]
            self.product_shift[self.constant] = values[self.constant].to(torch.float64)

    @property
    def dtype(self):
        """The parameters' dtype (the training dtype)."""
        return self.param_dtype

    def _row_weights(self, idx):
        """``(n_samples, len(idx))``: the weights of problems ``idx`` by row."""
        if len(idx) == self.n_problems:  # idx: sorted, distinct
            return self.row_weights
        return self.row_weights[:, idx]

    @property
    def sum_eps(self):
        """The rounding of the objectives' sums: float64's after :meth:`refine_precision`."""
        return torch.finfo(self.X.dtype).eps

    def refine_precision(self):
        """From now on, evaluate every problem in float64; False where nothing changes.

        The batch's :meth:`~sktorch_lr._solver.Problem.refine_precision`: where
        float32 sums stall a problem above ``tol`` (features far from zero or
        spanning many decades), ``X``, the weights, means and penalties are
        kept in float64 from then on (one float64 copy of ``X``; the float32
        values are exact in it, so the cached row products stay valid), the
        parameters stay in the training dtype and autograd rounds their
        gradients to it once.
        """
        if self.X.dtype == torch.float64:
            return False
        self.X = self.X.to(torch.float64)
        if self.y.is_floating_point():
            self.y = self.y.to(torch.float64)
        self.row_weights = self.row_weights.to(torch.float64)
        self.weight_sum = self.row_weights.sum(0)
        self.l2 = self._l2_exact.to(torch.float64)
        if self.mean is not None:
            # The same parametrisation (the means' float32 values), in float64.
            self.mean = self.mean.to(torch.float64)
        return True

    def model_intercept(self, coef, intercept, idx):
        """The models' ``b`` from the solver's ``(W, c)`` of problems ``idx``."""
        if intercept is None or self.mean is None:
            return intercept
        mean = self.mean[idx].to(coef.dtype)
        return intercept - torch.bmm(coef, mean[:, :, None])[:, :, 0]

    def _logits(self, X, coef, intercept, idx):
        # After refine_precision, the float32 parameters meet float64 rows.
        coef = coef.to(X.dtype)
        intercept = None if intercept is None else intercept.to(X.dtype)
        b, K, d = coef.shape
        # The intercepts in the product's own kernel (F.linear's addmm), not a
        # second pass over the (n, b, K) logits.
        bias = None if intercept is None else self.model_intercept(coef, intercept, idx).reshape(-1)
        return linear_logits(X, coef.reshape(b * K, d), bias).view(X.shape[0], b, K)

    def _data_terms(self, Z, y, row_weights):
        """``sum_i s_pi loss_pi`` for each problem: ``Z`` (n, b, K), ``row_weights`` (n, b)."""
        n, b, K = Z.shape
        if K == 1:  # a view, not Z[:, :, 0], whose backward zero-fills a copy
            return F.binary_cross_entropy_with_logits(
                Z.reshape(n, b), y[:, None].expand(n, b), weight=row_weights, reduction="none"
            ).sum(0)
        loss = F.cross_entropy(Z.permute(0, 2, 1), y[:, None].expand(n, b), reduction="none")
        return (loss * row_weights).sum(0)

    def objectives(self, coef, intercept, idx):
        """``J_p`` of problems ``idx`` (differentiable): shape ``(len(idx),)``.

        With ``keep_logits``, keeps the logits ``(n, len(idx), K)`` in ``self.logits``.
        """
        Z = self._logits(self.X, coef, intercept, idx)
        if self.keep_logits:
            self.logits = Z.detach()
        data = self._data_terms(Z, self.y, self._row_weights(idx))
        pen = 0.5 * self.l2[idx] * coef.to(self.X.dtype).pow(2).sum((1, 2))
        return data / self.weight_sum[idx] + pen

    def logit_change(self, coef, intercept, idx):
        """The logits' change ``(n, len(idx), K)`` for parameter changes ``(coef, intercept)``
        (one product ``X v``, through the centring; the logits are linear in the parameters)."""
        return self._logits(self.X, coef, intercept, idx)

    def fits_one_block(self, n_problems):
        """Whether :meth:`evaluate` of this many problems keeps their logits (one block of rows)."""
        return self.n_samples * n_problems * self.n_outputs <= CHUNK_NUMBERS

    def curvature_along(self, logits, coef, intercept, idx):
        """``v_p^T H_p v_p`` of problems ``idx`` for directions ``(coef, intercept)`` (float64).

        ``logits`` ``(n, len(idx), K)`` are the problems' logits at the point:
        one product ``X v`` and :func:`~sktorch_lr._curvature.logit_variance`,
        as :meth:`sktorch_lr._solver.Problem.curvature_along` for each problem.
        """
        with torch.no_grad():
            z = self._logits(self.X, coef, intercept, idx)
            per_sample = logit_variance(logits, z)  # (n, b)
            w = self._row_weights(idx).to(torch.float64)
            value = (w * per_sample).sum(0) / self.weight_sum[idx].to(torch.float64)
            return value + self.l2[idx] * coef.double().square().sum((1, 2))

    def evaluate(self, coef, intercept, idx):
        """``(J, grad_coef, grad_intercept)`` of problems ``idx`` at the given parameters.

        Rows go through in blocks that keep the ``(rows, problems, classes)``
        logits under :data:`~sktorch_lr._curvature.CHUNK_NUMBERS` numbers;
        autograd accumulates the blocks' gradients.
        """
        coef = coef.detach().requires_grad_(True)
        intercept = None if intercept is None else intercept.detach().requires_grad_(True)
        self.logits = None
        n = self.n_samples
        step = max(1, CHUNK_NUMBERS // max(len(idx) * self.n_outputs, 1))
        if self.X.layout == torch.sparse_coo or n <= step:
            total = self.objectives(coef, intercept, idx)
            total.sum().backward()
        else:
            row_weights = self._row_weights(idx)
            total = 0.0
            for start in range(0, n, step):
                rows = slice(start, start + step)
                Z = self._logits(self.X[rows], coef, intercept, idx)
                part = self._data_terms(Z, self.y[rows], row_weights[rows])
                part = part / self.weight_sum[idx]
                if start == 0:
                    part = part + 0.5 * self.l2[idx] * coef.to(self.X.dtype).pow(2).sum((1, 2))
                part.sum().backward()
                total = total + part.detach()
        grads = [coef.grad, None if intercept is None else intercept.grad]
        self.project_(grads, idx)
        self.fix_constant_columns_(grads[0], coef.detach(), idx)
        return total.detach(), grads[0], grads[1]

    def fix_constant_columns_(self, coef_grad, coef, idx):
        """In place: the gradient of constant columns' coefficients is the penalty's
        (see :meth:`sktorch_lr._solver.Problem.fix_constant_columns_`)."""
        if self.constant is None:
            return
        l2 = self.l2[idx].to(coef.dtype)[:, None, None]
        coef_grad[:, :, self.constant] = l2 * coef[:, :, self.constant]

    def project_(self, grads, idx):
        """Remove rounding along the softmax's null directions (see ``Problem.project_``)."""
        coef_grad, intercept_grad = grads
        if coef_grad.shape[1] < 2:
            return
        with torch.no_grad():
            if intercept_grad is not None:
                intercept_grad.sub_(intercept_grad.mean(1, keepdim=True))
            # No L1 in the batch: every problem's coefficients keep a zero mean over
            # the classes (they start at zero), where the penalty's gradient along
            # the shared shift is zero too.
            coef_grad.sub_(coef_grad.mean(1, keepdim=True))

    # --- curvature

    def measure(self, coef, intercept, idx, kind):
        """The Hessians of problems ``idx`` in the solver's parametrisation (float64).

        ``kind="dense"``: shape ``(b, 1, K m, K m)``, the full Hessian
        (``m = d + 1`` with an intercept, which is each class's last
        coordinate); ``"block"``: ``(b, K, m, m)``, the per-class blocks
        (:class:`~sktorch_lr._curvature.BlockPreconditioner`'s bound ``H <= 2P``).
        On :func:`batch_curvature_rows` evenly strided rows.
        """
        n, d, K = self.n_samples, self.n_features, self.n_outputs
        m = d + (intercept is not None)
        rows = None
        n_rows = batch_curvature_rows(n, m)
        if n > n_rows:
            rows = torch.linspace(0, n - 1, n_rows).round().long().to(self.X.device)
        X = self.X if rows is None else self.X.index_select(0, rows)
        w = self._row_weights(idx) if rows is None else self._row_weights(idx)[rows]
        w = w.to(torch.float64)
        w = w / w.sum(0, keepdim=True).clamp_min(1e-300)
        coef64 = coef.detach().to(torch.float64)
        int64 = None if intercept is None else intercept.detach().to(torch.float64)
        b = len(idx)
        upper_rows, upper_cols = torch.triu_indices(m, m, device=coef.device)
        n_upper = len(upper_rows)
        # Chunks of rows sized for the whole batch, so that they are the same at every
        # measurement (the cached row products are per chunk).
        B = self.n_problems
        width = B * K * (K if kind == "dense" else 1)
        step = max(1, CHUNK_NUMBERS // max(width + n_upper + B * K, 1))
        total = None
        # The rows are the same at every measurement (evenly strided, no randomness).
        cache = self._products if X.layout != torch.sparse_coo else None
        for start in range(0, X.shape[0], step):
            if X.layout == torch.sparse_coo:
                chunk = torch.arange(start, min(start + step, X.shape[0]), device=X.device)
                Xc = X.index_select(0, chunk).to_dense()
            else:
                Xc = X[start : start + step]
            Xc = Xc.to(torch.float64)
            rows_here = Xc.shape[0]
            with torch.no_grad():
                Z = self._logits(Xc, coef64, int64, idx)
            flat_z = Z.reshape(rows_here * b, K)
            flat_s = w[start : start + step].reshape(-1)
            if kind == "dense":
                A = link_jacobian(flat_z, flat_s, 1.0)
                A = A.reshape(rows_here, b * K * K)
            else:
                # The closed form: the batch's (rows x problems) samples would take K
                # backwards of autograd, several times the cost here; tests check
                # the two agree.
                A = logit_curvature_diagonal(flat_z, flat_s, 1.0, by_autograd=False)
                A = A.reshape(rows_here, b * K)
            products = None if cache is None else cache.get((start, rows_here, m))
            if products is None:
                if intercept is not None and self.product_shift is not None:
                    Xc = Xc - self.product_shift
                Xa = Xc if intercept is None else torch.cat([Xc, Xc.new_ones(rows_here, 1)], 1)
                products = upper_products(Xa)
                cached = sum(p.numel() for p in cache.values()) if cache is not None else 0
                if cache is not None and cached + products.numel() <= PRODUCTS_CACHE_NUMBERS:
                    cache[(start, rows_here, m)] = products
            part = A.T @ products
            total = part if total is None else total + part
        groups = b * K * (K if kind == "dense" else 1)
        # Both triangles from the upper one (flat indices: a plain column copy).
        H = total.new_empty(groups, m * m)
        H.index_copy_(1, upper_rows * m + upper_cols, total)
        H.index_copy_(1, upper_cols * m + upper_rows, total)
        # (b, G, m, m): one (m, m) block per class pair (dense) or per class (block).
        H = H.view(b, K * K if kind == "dense" else K, m, m)
        if self.mean is not None and intercept is not None:
            _centre_(H, self.mean[idx].to(H.dtype) - self.product_shift)
        # The penalty on the coefficients (not the intercepts): the diagonal blocks.
        diagonal_blocks = H[:, :: K + 1] if kind == "dense" else H
        diagonal_blocks.diagonal(dim1=-2, dim2=-1)[..., :d] += self.l2[idx].to(H.dtype)[
            :, None, None
        ]
        if kind == "dense":
            H = H.view(b, K, K, m, m).permute(0, 1, 3, 2, 4).reshape(b, 1, K * m, K * m)
        return H.contiguous()


def _centre_(H, mean):
    """In place, ``T^T H T`` for each ``(m, m)`` block of ``H`` ``(b, G, m, m)``.

    ``T = [[I, 0], [-mean^T, 1]]`` takes the solver's ``(W, c)`` to the model's
    ``(W, b = c - W mean)``, so this is the Hessian in the centred
    parametrisation. With ``H = [[A, h], [h^T, s]]``: ``A - h mean^T - mean h^T
    + s mean mean^T``, ``h - s mean`` and ``s``.
    """
    m = mean[:, None, :]  # (b, 1, d)
    A = H[..., :-1, :-1]
    h = H[..., :-1, -1].clone()  # (b, G, d)
    s = H[..., -1, -1][..., None]  # (b, G, 1)
    A -= h[..., :, None] * m[..., None, :]
    A -= m[..., :, None] * h[..., None, :]
    A += s[..., None] * (m[..., :, None] * m[..., None, :])
    column = h - s * m
    H[..., :-1, -1] = column
    H[..., -1, :-1] = column


def batch_kind(n_features, n_outputs):
    """The metric the batch uses for L2 models of this shape, or None.

    As :func:`~sktorch_lr._curvature.choose_preconditioner` picks it for one
    fit; None where that is the diagonal (blocks wider than its limit), which
    the batch does not implement: callers fit those problems one at a time.
    """
    kind = choose_preconditioner(n_features, n_outputs, l1=False)
    return None if kind == "diagonal" else kind


def solve_weightings(
    X,
    y_enc,
    weights,
    Cs,
    *,
    n_outputs,
    fit_intercept,
    device,
    dtype,
    max_iter,
    tol,
    on_epoch=None,
    verbose=0,
):
    """One L2-penalised fit per row of ``weights``, all trained as one batch.

    The front door of this module for the cross-validation (a fold's training
    rows per row) and the bootstrap (resample counts per row).

    Parameters
    ----------
    X : ndarray, scipy CSR matrix or Tensor of shape (n_samples, n_features)
        Validated input.
    y_enc : ndarray of shape (n_samples,)
        Encoded targets: 0/1 for the binary model, class indices otherwise.
    weights : ndarray of shape (B, n_samples)
        ``s_pi``, class weights folded in.
    Cs : sequence of float of length B
        Each problem's ``C`` (``np.inf``: no penalty).
    n_outputs, fit_intercept, device, dtype
        The model's shape, and where and in which precision it trains.
    max_iter, tol, on_epoch, verbose
        As for :func:`solve_batch`.

    Returns
    -------
    BatchResult
    """
    n_samples, n_features = X.shape
    kind = batch_kind(n_features, n_outputs)
    l2 = [penalty_strengths(C, 0.0, w.sum()).l2 for C, w in zip(Cs, weights, strict=True)]
    problem = BatchProblem(
        as_tensor(X, device, dtype),
        vector_to_tensor(y_enc, device, dtype if n_outputs == 1 else torch.int64),
        vector_to_tensor(np.asarray(weights), device, dtype),
        torch.as_tensor(l2, dtype=torch.float64, device=device),
        n_outputs=n_outputs,
        fit_intercept=fit_intercept,
    )
    nnz_per_row = X.nnz / max(n_samples, 1) if hasattr(X, "nnz") else n_features
    ratio = batch_measure_ratio(kind, n_samples, nnz_per_row, n_features, n_outputs, len(weights))
    with threads_for(_work(X, n_outputs) * len(weights)):
        return solve_batch(
            problem,
            kind=kind,
            max_iter=max_iter,
            tol=tol,
            measure_ratio=ratio,
            on_epoch=on_epoch,
            verbose=verbose,
        )


def batch_curvature_rows(n_samples, n_columns):
    """Rows the batch measures curvature on: ``ROWS_PER_COLUMN`` per column of ``[X, 1]``.

    One problem measures on up to :data:`~sktorch_lr._curvature.CURVATURE_MAX_ROWS`
    rows; a batch measures every problem, so it takes fewer, in proportion to the
    width of each block: a Hessian estimated from ``r`` rows is within about
    ``sqrt(m / r)`` of the full one, 9% at 128 rows per column. It is a
    preconditioner: the solution is the same, only the path to it changes. On
    50,000 x 50 with 50 problems this halves the cross-validation's time
    (0.51 s against 0.81-1.3 s with 16,384 rows), in the same 5 epochs.

    Up to :data:`BATCH_CURVATURE_MIN_ROWS` rows it measures on all of them:
    there a sample saves little, and near separation the curvature comes from
    the few rows near the boundary, which a sample can miss. Newton's steps in
    such an estimate converge linearly, not quadratically: 500 x 3 with four
    classes, no intercept, C=1e4, measured on 384 rows, lost 3% of its
    decrement an epoch and stalled at 2e-7 after 273 epochs, where the single
    fit took 13.
    """
    rows = max(ROWS_PER_COLUMN * n_columns, BATCH_CURVATURE_MIN_ROWS)
    return min(n_samples, CURVATURE_MAX_ROWS, rows)


def batch_measure_ratio(kind, n_rows, nnz_per_row, n_features, n_outputs, n_problems):
    """The cost of measuring the batch's curvature, in its epochs, for the schedule.

    ``"dense"`` metrics of binary models are the exact Hessians, and the batch is
    in Newton's mode: remeasured after every slow epoch. Measured on two cores,
    one measurement of 50 problems costs 1.8 (breast cancer) and 5.1 (50,000 x
    50) epochs of the batch, and Newton needs 5 to 20 epochs where a stale
    metric needs over a hundred (breast cancer: 21 epochs against 133, in a
    third of the time). Multinomial ``"dense"`` metrics take the block model's
    cost with ``K`` class pairs per logit (the ``K x K`` logit curvatures times
    the row products), and stay in Newton's mode up to
    :data:`DENSE_NEWTON_MAX_RATIO` (iris, wine, 45 x 30 with 3 classes at about
    3); on 2,500 x 15 with 12 classes a measurement costs about 8 epochs, and
    Newton's mode, measuring after nearly every epoch, took 11 s and reached
    ``max_iter`` (10 Cs x 3 folds) where the schedule's budget takes 1 s.

    ``"block"`` metrics are not exact (``H <= 2P``); they are measured on the
    schedule's budget. A measurement is one product of the problems' logit
    curvatures with the cached row products (``m (m + 1) / 2`` per row, at
    about :data:`TRIANGLE_MADDS_PER_UNIT` multiply-adds per unit); an epoch is
    the forward and backward products plus :data:`LOGIT_UNITS` per logit for
    the softmax and its gradient. Measured: digits x 50 problems 6.1 epochs
    (this model: 4.6), 2,000 x 20 with 1,000 classes x 5 problems 0.66 (1.2).
    """
    if kind == "dense" and n_outputs == 1:
        return RemeasureSchedule.NEWTON_RATIO
    m = n_features + 1
    logits = n_problems * n_outputs
    pairs = n_outputs if kind == "dense" else 1  # class pairs per logit
    rows = batch_curvature_rows(n_rows, m)
    epoch = logits * n_rows * (3.0 * nnz_per_row / MADDS_PER_UNIT + LOGIT_UNITS)
    measure = logits * pairs * rows * m * (m + 1) / 2.0 / TRIANGLE_MADDS_PER_UNIT
    ratio = (measure + MEASURE_OVERHEAD) / (epoch + EPOCH_OVERHEAD)
    if kind == "dense" and ratio <= DENSE_NEWTON_MAX_RATIO:
        return RemeasureSchedule.NEWTON_RATIO
    return ratio


@dataclass
class BatchResult:
    coef: torch.Tensor  # (B, K, d), the models' coefficients
    intercept: torch.Tensor | None  # (B, K), the models' intercepts
    objective: torch.Tensor  # (B,) the final objectives J_p
    decrement: torch.Tensor  # (B,) the final Newton decrements
    n_iter: torch.Tensor  # (B,) epochs each problem trained
    converged: torch.Tensor  # (B,) bool
    epochs: int  # epochs of the batch


class _Metric:
    """``P_p`` for every problem: the measured Hessians, their (damped) factors."""

    def __init__(self, H):
        self.H = H  # (B, G, s, s)
        self.base = damped_cholesky(H)
        self.factor = self.base
        self.levenberg = torch.zeros(H.shape[0], dtype=H.dtype, device=H.device)

    def update(self, idx, H):
        self.H[idx] = H
        factor = damped_cholesky(H)
        self.base[idx] = factor
        if self.factor is not self.base:
            self.factor[idx] = factor
        self.levenberg[idx] = 0.0

    def damp(self, idx, levenberg):
        """Marquardt damping ``P + levenberg * diag(P)`` for problems ``idx``."""
        if self.factor is self.base:
            self.factor = self.base.clone()
        self.levenberg[idx] = levenberg
        self.factor[idx] = damped_cholesky(_marquardt(self.H[idx], levenberg[:, None, None, None]))

    def solve(self, g, idx, undamped=False):
        """``P^-1 g`` for ``g`` of shape ``(b, K, m)``."""
        factor = (self.base if undamped else self.factor)[idx]
        b, G, s, _ = factor.shape
        rhs = g.to(factor.dtype).reshape(b, G, s, 1)
        return cholesky_solve(rhs, factor).reshape(g.shape).to(g.dtype)


def _pack(coef_grad, intercept_grad):
    """``(b, K, m)``: each class's coefficients, then its intercept."""
    if intercept_grad is None:
        return coef_grad
    return torch.cat([coef_grad, intercept_grad[:, :, None]], 2)


def _unpack(theta, fit_intercept):
    if not fit_intercept:
        return theta, None
    return theta[:, :, :-1], theta[:, :, -1]


def solve_batch(
    problem,
    *,
    kind,
    max_iter,
    tol,
    measure_ratio,
    on_epoch=None,
    verbose=0,
):
    """Train every problem of ``problem`` from zero; per-problem steps and stops.

    Parameters
    ----------
    problem : BatchProblem
    kind : {"dense", "block"}
        The preconditioner, as :func:`~sktorch_lr._curvature.choose_preconditioner`
        picks it for one problem of this shape.
    max_iter, tol : int, float
        As for one fit: at most ``max_iter`` epochs per problem; a problem
        stops once its Newton decrement is at most ``tol``.
    measure_ratio : float
        The cost of one curvature measurement of the batch, in its epochs
        (:class:`~sktorch_lr._solver.RemeasureSchedule`).
    on_epoch : callable or None
        Called after each epoch of the batch with the epoch number; returning
        True stops the batch (a callback asked to stop).

    Returns
    -------
    BatchResult
    """
    B, K, d = problem.n_problems, problem.n_outputs, problem.n_features
    fit_intercept = problem.fit_intercept
    dtype, device = problem.dtype, problem.X.device
    m = d + fit_intercept
    theta = torch.zeros(B, K, m, dtype=dtype, device=device)
    buffers = torch.zeros_like(theta)
    eps = torch.finfo(dtype).eps
    every = torch.arange(B, device=device)

    def evaluate(idx, at):
        coef, intercept = _unpack(at, fit_intercept)
        f, gc, gi = problem.evaluate(coef, intercept, idx)
        # Objectives in float64: what float64 sums resolve, float32 values could not hold.
        return f.to(torch.float64), _pack(gc, gi)

    def project(direction, idx):
        parts = list(_unpack(direction, fit_intercept))
        # Views: projecting the parts projects the packed tensor in place.
        problem.project_(parts, idx)
        return direction

    # ConjugateStep's rule (per problem) where the single solver takes it: block
    # metrics of few classes, with the logits at theta (n, B, K) kept (one block of rows).
    conjugate = (
        kind in ConjugateStep.KINDS and K <= ConjugateStep.MAX_CLASSES and problem.fits_one_block(B)
    )
    # LineSearch's rule where the single solver takes it: dense metrics in Newton's mode.
    # The class blocks may take a larger share of the batch's time (BLOCK_SHARE).
    share = BLOCK_SHARE if kind == "block" else RemeasureSchedule.SHARE
    newton_mode = RemeasureSchedule(measure_ratio, kind, share).min_epochs == 1
    line_search = LineSearch.applies(kind, newton_mode, problem.n_samples * B * K)
    keep_logits = conjugate or line_search
    problem.keep_logits = keep_logits
    f, grad = evaluate(every, theta)
    _check(f, 0)
    # Where each problem's metric was measured, for stale_decrement_bound.
    measured_theta = theta.clone()
    if keep_logits:
        logits = problem.logits.clone()
    if conjugate:
        previous_direction = torch.zeros_like(theta)
        previous_gd = torch.zeros(B, dtype=torch.float64, device=device)  # 0: restart
    f_start = f.clone()
    metric = _Metric(problem.measure(*_unpack(theta, fit_intercept), every, kind))
    lr = torch.ones(B, dtype=torch.float64, device=device)
    momentum = torch.zeros(B, dtype=torch.float64, device=device)
    lr_max = torch.ones(B, dtype=torch.float64, device=device)
    low = torch.ones(B, dtype=torch.float64, device=device)
    high = torch.ones(B, dtype=torch.float64, device=device)
    low_value, high_value = preconditioned_spectrum(kind)

    def adopt(idx, rule_lr, rule_m):
        # Keep each problem's velocity lr * buffer.
        buffers[idx] *= (lr[idx] / rule_lr).to(dtype)[:, None, None]
        lr[idx] = rule_lr
        lr_max[idx] = rule_lr
        momentum[idx] = rule_m

    def retune(idx, new_low=None):
        """The step rule (heavy ball) of problems ``idx``: fresh metrics, or new low ends."""
        if new_low is None:
            low[idx], high[idx] = low_value, high_value
            adopt(idx, *step_rule(low_value, high_value, "auto", nesterov=False, stochastic=False))
            return
        for j, h in zip(idx.tolist(), new_low[idx].tolist(), strict=True):
            low[j] = h
            rule = step_rule(h, float(high[j]), "auto", nesterov=False, stochastic=False)
            adopt(idx[idx == j], *rule)

    retune(every)
    direction = project(metric.solve(grad, every), every)
    decrement = _decrement(grad, direction)
    n_iter = torch.zeros(B, dtype=torch.long, device=device)
    converged = torch.zeros(B, dtype=torch.bool, device=device)
    active = torch.ones(B, dtype=torch.bool, device=device)
    moved = torch.zeros(B, dtype=torch.bool, device=device)
    halvings = torch.zeros(B, dtype=torch.long, device=device)
    idle = torch.zeros(B, dtype=torch.long, device=device)
    best_decrement = torch.full((B,), math.inf, dtype=torch.float64, device=device)
    history = torch.full(
        (B, SpectrumEstimate.WINDOW + 1), math.nan, dtype=torch.float64, device=device
    )
    seen = torch.zeros(B, dtype=torch.long, device=device)
    schedule = RemeasureSchedule(measure_ratio, kind, share)
    since = torch.zeros(B, dtype=torch.long, device=device)

    def remeasure(ids):
        """Fresh metrics for problems ``ids`` at ``theta``, their step rules restarted;
        returns their new directions (the decrements set)."""
        metric.update(ids, problem.measure(*_unpack(theta[ids], fit_intercept), ids, kind))
        since[ids] = 0
        moved[ids] = False
        measured_theta[ids] = theta[ids]
        if conjugate:
            previous_gd[ids] = 0.0  # restart in the new metric
        history[ids] = math.nan
        seen[ids] = 0
        retune(ids)
        renewed = project(metric.solve(grad[ids], ids), ids)
        decrement[ids] = _decrement(grad[ids], renewed)
        return renewed

    epoch = 0
    for epoch in range(1, max_iter + 1):
        idx = every[active]
        if len(idx) == 0:
            epoch -= 1
            break
        # --- the momentum step of every active problem (torch.optim.SGD's arithmetic)
        if conjugate:
            lr_a, m_a = _conjugate_step(
                problem,
                logits[:, idx],
                idx,
                grad[idx],
                direction,
                buffers[idx],
                previous_direction,
                previous_gd,
                lr,
                halvings,
                fit_intercept,
            )
            momentum[idx] = m_a
            lr_a = lr_a.to(dtype)[:, None, None]
            m_a = m_a.to(dtype)[:, None, None]
        else:
            if line_search:
                searching = LineSearch.wanted(decrement[idx], halvings[idx], momentum[idx])
                if bool(searching.any()):
                    sub = idx[searching]
                    lr[sub] = _line_minima(
                        problem, logits[:, sub], sub, grad[sub], direction[searching],
                        theta[sub], fit_intercept,
                    )  # fmt: skip
            lr_a = lr[idx].to(dtype)[:, None, None]
            m_a = momentum[idx].to(dtype)[:, None, None]
        buf = m_a * buffers[idx] + direction
        trial = theta[idx] - lr_a * buf
        f_new, grad_new = evaluate(idx, trial)
        f_old = f[idx]
        noise = NOISE_ULPS * problem.sum_eps * f_old.abs().clamp_min(1e-30)
        ok = f_new <= f_old + noise  # False for NaN too
        n_iter[idx] += 1
        # --- accepted steps
        acc = idx[ok]
        theta[acc] = trial[ok]
        buffers[acc] = buf[ok]
        f[acc] = f_new[ok]
        grad[acc] = grad_new[ok]
        moved[acc] = True
        halvings[acc] = 0
        if keep_logits:
            logits[:, acc] = problem.logits[:, ok]
        lr[acc] = torch.minimum(lr_max[acc], lr[acc] * StepControl.GROW)
        # --- rejected ones: back to the start of the epoch, momentum forgotten, shorter step
        rej = idx[~ok]
        if len(rej):
            buffers[rej] = 0.0
            if conjugate:
                previous_gd[rej] = 0.0  # restart
            lr[rej] *= StepControl.SHRINK
            lr_max[rej] = torch.minimum(lr_max[rej], lr[rej])
            damp = rej[halvings[rej] >= StepControl.DAMP_AFTER - 1]
            if len(damp):
                lev = torch.clamp_min(
                    metric.levenberg[damp] * StepControl.DAMP_GROWTH, StepControl.DAMP_START
                )
                metric.damp(damp, lev)
            halvings[rej] += 1
            history[rej] = math.nan
            seen[rej] = 0
            if bool((halvings[rej] > StepControl.MAX_HALVINGS).any()):
                raise DivergenceError(
                    f"The objective rose after every step up to epoch {epoch}, although the "
                    f"step was shortened {StepControl.MAX_HALVINGS} times; check the input "
                    "for extreme values."
                )
        _check(f[idx], epoch, f_start[idx])
        # --- the new directions and decrements
        previous = decrement[idx].clamp_min(1e-300)
        direction = project(metric.solve(grad[idx], idx), idx)
        dec = _decrement(grad[idx], _undamped(metric, grad[idx], idx, direction, project))
        decrement[idx] = dec
        if verbose >= 2 or (verbose and (epoch == 1 or epoch % 20 == 0)):
            print(
                f"Epoch {epoch}: {len(idx)} problems training, largest decrement "
                f"{float(dec.max()):.3e}"
            )
        # --- fresh metrics, in one measurement for every problem that needs one: those
        # below tol in a metric older than their last step (a stale metric can
        # understate the decrement), and, after an accepted step, those that
        # RemeasureSchedule's rule says are due.
        since[idx] += 1
        below = dec <= tol
        stale = below & moved[idx]
        if bool(stale.any()):
            # Below tol also in a fresh metric, by stale_decrement_bound: no need to measure.
            # The logits' drift since the measurement from one product X (theta - theta_P).
            ids = idx[stale]
            change = theta[ids] - measured_theta[ids]
            with torch.no_grad():
                z = problem.logit_change(*_unpack(change, fit_intercept), ids)
            bound = stale_decrement_bound(dec[stale], kind, logit_drift(z, per_problem=True))
            if bound is not None:
                confirmed = torch.zeros_like(stale)
                confirmed[stale] = bound <= tol
                stale &= ~confirmed
        due = ok & (since[idx] >= schedule.min_epochs) & ~(dec / previous <= schedule.FAST)
        fresh = stale | (due & ~below)
        renew = idx[fresh]
        if len(renew):
            direction[fresh] = remeasure(renew)
        # --- stops: the decrement, or a stall
        finished = idx[decrement[idx] <= tol]
        converged[finished] = True
        active[finished] = False
        improved = decrement[idx] < StallStop.IMPROVE * best_decrement[idx]
        best_decrement[idx] = torch.where(improved, decrement[idx], best_decrement[idx])
        idle[idx] = torch.where((f[idx] < f_old - noise) | improved, 0, idle[idx] + 1)
        stalled = idx[(idle[idx] >= StallStop.PATIENCE) & active[idx]]
        resolution = max(tol, math.sqrt(eps))
        if (
            len(stalled)
            and bool((decrement[stalled] > resolution).any())
            and problem.refine_precision()
        ):
            # Short of tol and of what the dtype resolves: float32 sums are the floor,
            # as in the single solver. Every problem still training goes on with
            # float64 sums, from fresh gradients and without momentum built on noise.
            going = active[idx]
            ids = idx[going]
            f_ids, grad_ids = evaluate(ids, theta[ids])
            f[ids] = f_ids
            grad[ids] = grad_ids
            if keep_logits:
                logits = logits.to(torch.float64)  # the evaluations' logits from now on
                logits[:, ids] = problem.logits
            buffers[ids] = 0.0
            # A fresh metric and the rule's step: the steps float32's noise rejected
            # left lr halved and the metric damped (see solve's refine).
            halvings[ids] = 0
            direction[going] = remeasure(ids)
            idle[ids] = 0
            best_decrement[ids] = math.inf
            stalled = stalled[:0]
        if len(stalled):
            converged[stalled] = decrement[stalled] <= resolution
            active[stalled] = False
        if on_epoch is not None and on_epoch(epoch):
            break
        keep = active[idx]
        direction = direction[keep]
        # --- SpectrumEstimate's rule for accepted steps in a metric kept (heavy ball only)
        if conjugate:
            continue
        learn = idx[keep & ok & ~fresh]
        new_low = _learn_low(history, seen, learn, decrement, lr, momentum, low)
        if new_low is not None:
            changed, values = new_low
            retune(changed, values)
            history[changed] = math.nan
            seen[changed] = 0
    coef, intercept = _unpack(theta, fit_intercept)
    coef = coef.contiguous()
    if intercept is not None:
        intercept = problem.model_intercept(coef, intercept.contiguous(), every).detach()
    return BatchResult(coef, intercept, f, decrement, n_iter, converged, epoch)


def _line_minima(problem, logits, idx, grad, direction, theta, fit_intercept):
    """:class:`~sktorch_lr._solver.LineSearch`'s ``lr`` for problems ``idx`` (float64).

    Each problem's minimum of ``J_p(theta_p - t d_p)``, as
    :meth:`~sktorch_lr._solver.Problem.line_minimum` finds it for one: the
    logits ``(n, b, K)`` kept at ``theta`` and one product ``X D`` give the
    logits along every line, whose derivatives are one pass over them.
    """
    with torch.no_grad():
        dz = problem.logit_change(*_unpack(direction, fit_intercept), idx).to(torch.float64)
        z0 = logits.to(torch.float64)
        n, b = dz.shape[0], dz.shape[1]
        y = problem.y[:, None].expand(n, b)
        w = problem._row_weights(idx).to(torch.float64)  # (n, b)
        S = problem.weight_sum[idx].to(torch.float64)
        l2 = problem.l2[idx].to(torch.float64)
        coef, coef_d = _unpack(theta, fit_intercept)[0], _unpack(direction, fit_intercept)[0]
        wd = (coef.double() * coef_d.double()).sum((1, 2))
        dd = coef_d.double().square().sum((1, 2))
        slope0 = (grad.double() * direction.double()).sum((1, 2))

        def derivatives(t):
            t = torch.tensor(t, dtype=torch.float64, device=dz.device)
            first, second = logit_derivatives_along(z0 - t[None, :, None] * dz, y, dz)
            slope = -(w * first).sum(0) / S + l2 * (t * dd - wd)
            curvature = (w * second).sum(0) / S + l2 * dd
            return slope.tolist(), curvature.tolist()

        t = LineSearch.minimise(derivatives, slope0.clamp_min(1e-300).tolist())
        return torch.tensor(t, dtype=torch.float64, device=dz.device)


def _conjugate_step(
    problem,
    logits,
    idx,
    grad,
    direction,
    buffers,
    previous_direction,
    previous_gd,
    lr,
    halvings,
    fit_intercept,
):
    """:class:`~sktorch_lr._solver.ConjugateStep`'s ``(lr, momentum)`` for problems ``idx``.

    Polak-Ribiere's momentum (0 where ``previous_gd`` is 0: a restart), the
    Newton step along ``v = momentum * buffer + direction``, halved once per
    rejection in a row; where ``v`` does not descend, ``v = direction``; where
    that has no positive curvature either, the heavy-ball ``lr``. Updates
    ``previous_direction`` and ``previous_gd`` in place.
    """
    gd = (grad.double() * direction.double()).sum((1, 2))
    g_dprev = (grad.double() * previous_direction[idx].double()).sum((1, 2))
    beta = ConjugateStep.polak_ribiere(gd, g_dprev, previous_gd[idx])
    previous_direction[idx] = direction
    previous_gd[idx] = gd.clamp_min(0.0)
    v = beta.to(direction.dtype)[:, None, None] * buffers + direction
    step = ConjugateStep.lr(
        (grad.double() * v.double()).sum((1, 2)),
        problem.curvature_along(logits, *_unpack(v, fit_intercept), idx),
    )
    retry = torch.isnan(step) & (beta > 0)
    if bool(retry.any()):
        beta = torch.where(retry, 0.0, beta)
        sub = retry.nonzero()[:, 0]
        curvature = problem.curvature_along(
            logits[:, sub], *_unpack(direction[sub], fit_intercept), idx[sub]
        )
        step[sub] = ConjugateStep.lr(gd[sub], curvature)
    step = torch.where(torch.isnan(step), lr[idx], step)
    return step * StepControl.SHRINK ** halvings[idx].double(), beta


def _undamped(metric, grad, idx, direction, project):
    """The direction in the undamped metric where a problem is damped (the stopping measure)."""
    damped = metric.levenberg[idx] > 0
    if not bool(damped.any()):
        return direction
    out = direction.clone()
    out[damped] = project(metric.solve(grad[damped], idx[damped], undamped=True), idx[damped])
    return out


def _decrement(grad, direction):
    return (grad.double() * direction.double()).sum((1, 2)).clamp_min(0.0).sqrt()


def _learn_low(history, seen, ids, decrement, lr, momentum, low):
    """:class:`SpectrumEstimate`'s rule for problems ``ids``: smaller ``low`` ends, or None."""
    W = SpectrumEstimate.WINDOW
    if len(ids) == 0:
        return None
    history[ids] = torch.roll(history[ids], -1, 1)
    history[ids, -1] = decrement[ids]
    seen[ids] += 1
    ready = ids[seen[ids] > W]
    if len(ready) == 0:
        return None
    first, last = history[ready, 0], history[ready, -1]
    valid = (last > 0) & (last < first)
    rho = (last / first).clamp_min(1e-300) ** (1.0 / W)
    m = momentum[ready]
    h = (1.0 + m - rho - m / rho) / lr[ready]
    lower = valid & (h > 0) & (h < SpectrumEstimate.SHRINK * low[ready])
    if not bool(lower.any()):
        return None
    values = low.clone()
    values[ready[lower]] = h[lower]
    return ready[lower], values


def _check(f, epoch, f_start=None):
    bad = ~torch.isfinite(f)
    if f_start is not None:
        bad |= f > 1e3 * (f_start.abs() + 1.0)
    if bool(bad.any()):
        raise DivergenceError(
            f"Training diverged at epoch {epoch}: an objective became non-finite or exploded. "
            "Check the input for extreme values, or standardise the features."
        )
