"""The one objective: sklearn's, scaled by 1 / (C S); stable where the naive form is not."""

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from sktorch_lr._objective import (
    objective,
    optimality_gradient,
    penalty_strengths,
    per_sample_loss,
    soft_threshold_,
)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("l1_ratio", [0.0, 0.3, 1.0])
def test_objective_is_sklearns_divided_by_C_S(n_classes, l1_ratio):
    rng = np.random.RandomState(0)
    n, d, C = 40, 5, 0.7
    X = rng.randn(n, d)
    y = rng.randint(n_classes, size=n)
    sw = rng.uniform(0.5, 2.0, size=n)
    k = 1 if n_classes == 2 else n_classes
    W = rng.randn(k, d)
    b = rng.randn(k)
    z = X @ W.T + b
    if n_classes == 2:
        p = 1 / (1 + np.exp(-z[:, 0]))
        proba = np.c_[1 - p, p]
        yt = torch.tensor(y, dtype=torch.float64)
    else:
        proba = np.exp(z - z.max(1, keepdims=True))
        proba /= proba.sum(1, keepdims=True)
        yt = torch.tensor(y)
    S = sw.sum()
    sklearn_objective = C * log_loss(y, proba, sample_weight=sw, normalize=False) + (
        (1 - l1_ratio) / 2 * (W**2).sum() + l1_ratio * np.abs(W).sum()
    )
    ours = objective(
        torch.tensor(W),
        torch.tensor(b),
        torch.tensor(X),
        yt,
        torch.tensor(sw),
        penalty_strengths(C, l1_ratio, S),
        normalizer=S,
    )
    assert float(ours) * C * S == pytest.approx(sklearn_objective, rel=1e-12)


def test_C_inf_means_no_penalty():
    assert penalty_strengths(np.inf, 0.5, 10.0) == (0.0, 0.0)


def test_matches_linear_sigmoid_bceloss_and_keeps_its_gradient_when_saturated():
    y = torch.tensor([1.0, 0.0, 1.0])
    z = torch.tensor([[0.3], [-1.2], [2.0]])
    naive = torch.nn.BCELoss(reduction="none")(torch.sigmoid(z[:, 0]), y)
    torch.testing.assert_close(per_sample_loss(z, y), naive)
    # A logit of -20 for a positive sample in float32: sigmoid underflows to ~2e-9,
    # BCELoss clamps log(p) at -100 and its gradient vanishes; the logits form keeps it.
    z = torch.tensor([[-20.0]], requires_grad=True)
    per_sample_loss(z, torch.tensor([1.0])).sum().backward()
    assert z.grad.item() == pytest.approx(-1.0, abs=1e-6)
    z2 = torch.tensor([-120.0], requires_grad=True)
    torch.nn.BCELoss()(torch.sigmoid(z2), torch.tensor([1.0])).backward()
    assert z2.grad.item() == 0.0


def test_soft_threshold_and_optimality_gradient():
    w = torch.tensor([[0.5, -0.05, 0.0, -2.0]])
    soft_threshold_(w, 0.1)
    torch.testing.assert_close(w, torch.tensor([[0.4, 0.0, 0.0, -1.9]]))
    g = torch.tensor([[0.2, 0.05, -0.3, 0.1]])
    expected = torch.tensor([[0.2 + 0.1, 0.0, -0.2, 0.1 - 0.1]])
    torch.testing.assert_close(optimality_gradient(g, w, 0.1), expected)


@pytest.mark.parametrize("n, K", [(600, 3), (600, 16), (100, 3), (600, 40)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_cross_entropy_layouts_agree(n, K, reduction):
    """The transposed (1, K, n) layout for few classes is F.cross_entropy, values and gradients."""
    import torch.nn.functional as F

    from sktorch_lr._objective import _cross_entropy

    gen = torch.Generator().manual_seed(K)
    Z = (3 * torch.randn(n, K, generator=gen, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, K, (n,), generator=gen)
    w = torch.rand(n, generator=gen, dtype=torch.float64)
    ours = _cross_entropy(Z, y, reduction)
    ref = F.cross_entropy(Z, y, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-15)
    (g_ours,) = torch.autograd.grad((ours * w).sum() if reduction == "none" else ours, Z)
    (g_ref,) = torch.autograd.grad((ref * w).sum() if reduction == "none" else ref, Z)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("coalesced", [True, False])
def test_sparse_logits_and_their_gradient_are_torch_sparse_mms(dtype, coalesced):
    """The CSR route of linear_logits against torch.sparse.mm: values and gradients."""
    import gc

    import scipy.sparse as sp

    from sktorch_lr._objective import _CSR_FORMS, linear_logits

    A = sp.random(40, 7, density=0.3, format="coo", random_state=0)
    indices = torch.as_tensor(np.vstack([A.row, A.col]), dtype=torch.int64)
    values = torch.as_tensor(A.data, dtype=dtype)
    X = torch.sparse_coo_tensor(indices, values, A.shape, check_invariants=True)
    if not coalesced:  # a duplicated entry, summed by coalescing
        X = torch.sparse_coo_tensor(
            torch.cat([indices, indices[:, :1]], 1),
            torch.cat([values, values[:1]]),
            A.shape,
            check_invariants=True,
        )
    gen = torch.Generator().manual_seed(0)
    coef = torch.randn(3, 7, generator=gen, dtype=dtype, requires_grad=True)
    intercept = torch.randn(3, generator=gen, dtype=dtype, requires_grad=True)
    weights = torch.randn(40, 3, generator=gen, dtype=dtype)
    (linear_logits(X, coef, intercept) * weights).sum().backward()
    ours = coef.grad.clone(), intercept.grad.clone()
    coef.grad = intercept.grad = None
    reference = torch.sparse.mm(X.coalesce(), coef.T) + intercept
    (reference * weights).sum().backward()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(linear_logits(X, coef, intercept), reference, **tol)
    torch.testing.assert_close(ours[0], coef.grad, **tol)
    torch.testing.assert_close(ours[1], intercept.grad, **tol)
    if dtype == torch.float64:  # and its double backward (Hessian-vector products)
        c = coef.detach().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda c, X=X: linear_logits(X, c, None), (c,))
        assert torch.autograd.gradgradcheck(lambda c, X=X: linear_logits(X, c, None).sin(), (c,))
    # Built once per tensor, dropped with it; X^T's form only for a backward.
    fresh = X.clone()
    with torch.no_grad():
        torch.testing.assert_close(linear_logits(fresh, coef, intercept), reference, **tol)
    assert _CSR_FORMS[fresh][1] is None
    linear_logits(fresh, coef, intercept).sum().backward()
    assert _CSR_FORMS[fresh][1] is not None
    assert _CSR_FORMS[X] is _CSR_FORMS[X] and len(_CSR_FORMS) >= 1
    before = len(_CSR_FORMS)
    del X, fresh
    gc.collect()
    assert len(_CSR_FORMS) == before - 2
