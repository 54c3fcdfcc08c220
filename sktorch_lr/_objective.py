"""The one definition of the training objective.

Everything that needs the objective -- the solver, ``lr="auto"``'s curvature
estimate, :mod:`sktorch_lr.inspection` and the tests -- calls the functions
here, so they can never disagree.

With ``s_i = sample_weight_i * class_weight[y_i]`` and ``S = sum_i s_i``::

    J(W, b) = sum_i s_i * loss_i(W, b) / S
              + ((1 - l1_ratio) / 2 * ||W||_2^2 + l1_ratio * ||W||_1) / (C * S)

``loss_i`` is the binary cross-entropy of ``sigmoid(x_i @ W.T + b)`` (two
classes, ``W`` of shape ``(1, n_features)``) or the multinomial cross-entropy of
``softmax(x_i @ W.T + b)`` (``K > 2`` classes, ``W`` of shape
``(K, n_features)``). ``C * S * J`` is exactly the objective of
:class:`sklearn.linear_model.LogisticRegression`, so both have the same
minimiser. The intercept ``b`` is not penalised; ``C = inf`` means no penalty.

Losses are computed from logits with the numerically stable
``binary_cross_entropy_with_logits`` / ``cross_entropy``: identical to
``Linear -> Sigmoid -> BCELoss`` in exact arithmetic, but without the loss of
gradient that the naive form suffers once ``|logit|`` passes ~17 in float32.
"""

import math
import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary


class Penalty(NamedTuple):
    """Strengths of the penalty terms, already divided by ``C * S``.

    ``l2`` multiplies ``||W||^2 / 2`` and ``l1`` multiplies ``||W||_1``.
    """

    l2: float
    l1: float


def penalty_strengths(C, l1_ratio, weight_sum):
    """Return the :class:`Penalty` of ``C``, ``l1_ratio`` and ``S = weight_sum``."""
    if math.isinf(C):
        return Penalty(0.0, 0.0)
    scale = 1.0 / (C * float(weight_sum))
    return Penalty((1.0 - l1_ratio) * scale, l1_ratio * scale)


def linear_logits(X, coef, intercept):
    """Logits ``X @ coef.T + intercept`` of shape ``(n_samples, n_outputs)``.

    ``X`` may be a dense or a sparse COO tensor; ``intercept`` may be ``None``.
    Sparse ``X`` on the CPU is multiplied in CSR form (:class:`_SparseTimes`).
    """
    if X.layout == torch.sparse_coo:
        if X.device.type == "cpu" and torch.is_grad_enabled() and coef.requires_grad:
            out = _SparseTimes.apply(coef.T, *_csr_forms(X))
        elif X.device.type == "cpu":  # no backward: X^T's form is not needed
            out = _csr_forms(X, transpose=False)[0] @ coef.T
        else:
            out = torch.sparse.mm(X, coef.T)
        return out if intercept is None else out + intercept
    # F.linear is nn.Linear's own forward: one fused addmm, and on tall X a
    # faster matrix-vector kernel than ``X @ coef.T`` (26 ms against 45 ms for
    # 1M x 100 float32 on two cores).
    return F.linear(X, coef, intercept)


class _SparseTimes(torch.autograd.Function):
    """``X @ B`` for sparse ``X`` in CSR form; the backward ``X^T @ grad`` with ``X^T`` in CSR.

    The gradient is the one :func:`torch.sparse.mm` gives (the tests check it
    with ``gradcheck``), but torch's CPU kernels for sparse COO, and autograd's
    backward of a CSR product (which transposes ``X`` on every call), are 10 to 20
    times slower than two CSR products: 2,500 x 150 with every entry stored, 3
    classes, 9 ms against 0.4 ms a product.
    """

    @staticmethod
    def forward(ctx, B, X_csr, Xt_csr):
        ctx.forms = (X_csr, Xt_csr)
        return X_csr @ B

    @staticmethod
    def backward(ctx, grad):
        # The same product with the forms swapped, so that a double backward
        # (Hessian-vector products) stays on CSR products too.
        X_csr, Xt_csr = ctx.forms
        return _SparseTimes.apply(grad, Xt_csr, X_csr), None, None


# The CSR forms of each sparse COO X, [X, X^T] (X^T None until a backward needs it),
# built once per tensor and dropped with it.
_CSR_FORMS = WeakIdKeyDictionary()


def _csr_forms(X, transpose=True):
    """``(X, X^T)`` in CSR form for a CPU sparse COO tensor, cached per tensor.

    Built with scipy's counting sort: torch's transpose-and-coalesce costs as
    much as twenty products. ``transpose=False``: ``(X,)`` only, and ``X^T``
    stays unbuilt (predictions, float64 evaluations without a backward).
    """
    forms = _CSR_FORMS.get(X)
    if forms is None:
        coalesced = X if X.is_coalesced() else X.coalesce()
        rows, cols = coalesced.indices().numpy()
        values = coalesced.values().numpy()
        forms = [_torch_csr(sp.csr_matrix((values, (rows, cols)), shape=X.shape)), None]
        _CSR_FORMS[X] = forms
    if not transpose:
        return (forms[0],)
    if forms[1] is None:
        X_csr = forms[0]
        A = sp.csr_matrix(
            (X_csr.values().numpy(), X_csr.col_indices().numpy(), X_csr.crow_indices().numpy()),
            shape=X_csr.shape,
        )
        forms[1] = _torch_csr(A.T.tocsr())
    return tuple(forms)


def _torch_csr(A):
    with warnings.catch_warnings():
        # Torch's one-time notice that CSR support is "in beta": the two products
        # used here are tested against torch.sparse.mm.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support", category=UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(A.indptr.astype(np.int64)),
            torch.from_numpy(A.indices.astype(np.int64)),
            torch.from_numpy(A.data),
            A.shape,
            check_invariants=False,
        )


# Torch's softmax is slow over a short last dimension: with the classes as
# dimension 1 of a (1, K, n) view (the rows as cross_entropy's "spatial"
# dimension) forward and backward run 1.2-2x faster for 3 to 10 classes from
# 1,000 rows (digits, 1,797 x 10: 356 us against 601 us on one thread), and
# slower from about 30 classes or under a few hundred rows.
TRANSPOSED_MAX_CLASSES = 16
TRANSPOSED_MIN_ROWS = 512


def _cross_entropy(logits, y, reduction):
    n, K = logits.shape
    if K <= TRANSPOSED_MAX_CLASSES and n >= TRANSPOSED_MIN_ROWS:
        out = F.cross_entropy(logits.T[None], y[None], reduction=reduction)
        return out[0] if reduction == "none" else out
    return F.cross_entropy(logits, y, reduction=reduction)


def per_sample_loss(logits, y):
    """Unweighted cross-entropy of each sample, shape ``(n_samples,)``.

    One logit column means the binary model (``y`` holds 0./1. in the logits'
    dtype); several mean the multinomial one (``y`` holds class indices).
    """
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y, reduction="none")
    return _cross_entropy(logits, y, "none")


def data_term(logits, y, sample_weight, normalizer):
    """``sum_i s_i * loss_i / normalizer`` (``sample_weight=None`` means all ones)."""
    if sample_weight is None:
        # Unweighted full batch: the mean is sum / n in one kernel.
        mean = normalizer == logits.shape[0]
        reduction = "mean" if mean else "sum"
        if logits.shape[1] == 1:
            total = F.binary_cross_entropy_with_logits(logits[:, 0], y, reduction=reduction)
        else:
            total = _cross_entropy(logits, y, reduction)
        return total if mean else total / normalizer
    return (per_sample_loss(logits, y) * sample_weight).sum() / normalizer


def penalty_term(coef, penalty, include_l1=True):
    """``l2 / 2 * ||W||^2 + l1 * ||W||_1`` (the L1 part only if ``include_l1``), or None."""
    value = None
    if penalty.l2:
        value = (0.5 * penalty.l2) * coef.pow(2).sum()
    if include_l1 and penalty.l1:
        l1 = penalty.l1 * coef.abs().sum()
        value = l1 if value is None else value + l1
    return value


def objective(coef, intercept, X, y, sample_weight, penalty, *, normalizer, include_l1=True):
    """The training objective ``J`` at ``(coef, intercept)``, as a 0-d tensor.

    Parameters
    ----------
    coef : Tensor of shape (n_outputs, n_features)
    intercept : Tensor of shape (n_outputs,) or None
    X : Tensor of shape (n_samples, n_features), dense or sparse COO
    y : Tensor of shape (n_samples,)
        0./1. for the binary model, class indices for the multinomial one.
    sample_weight : Tensor of shape (n_samples,) or None
        ``s_i``, class weights already folded in.
    penalty : Penalty
        From :func:`penalty_strengths` with the weight sum ``S`` of the whole
        training set.
    normalizer : float
        ``S`` for the whole training set. For a mini-batch of ``m`` of the
        ``n`` samples the solver passes ``S * m / n``, which makes the batch
        objective an unbiased estimate of ``J``.
    include_l1 : bool, default=True
        ``False`` gives the smooth part that autograd differentiates; the
        solver applies the L1 part with a proximal step.
    """
    value = data_term(linear_logits(X, coef, intercept), y, sample_weight, normalizer)
    pen = penalty_term(coef, penalty, include_l1)
    return value if pen is None else value + pen


def soft_threshold_(coef, threshold):
    """In place, the proximal operator of ``threshold * ||W||_1``."""
    coef.copy_(coef.sign() * (coef.abs() - threshold).clamp_min(0.0))
    return coef


def optimality_gradient(coef_grad, coef, l1):
    """Gradient of ``J`` with the L1 part taken as its minimum-norm subgradient.

    ``coef_grad`` is the gradient of the smooth part. Where ``W_j != 0`` the
    result is ``g_j + l1 * sign(W_j)``; where ``W_j == 0`` it is the part of
    ``g_j`` that ``[-l1, l1]`` cannot cancel. It is zero exactly at the
    minimiser, which is what the stopping rule measures.
    """
    if not l1:
        return coef_grad
    shrunk = coef_grad.sign() * (coef_grad.abs() - l1).clamp_min(0.0)
    return torch.where(coef != 0, coef_grad + l1 * coef.sign(), shrunk)
