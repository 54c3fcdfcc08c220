"""Covariances, influence and leave-one-out for a fitted model: the algebra.

:class:`sktorch_lr.inspection.GradientInspector` gathers the pieces by autograd
(the Hessian, the per-sample gradients, each checked against its closed form)
and calls the functions here. Everything is on the scale of the penalised
negative log-likelihood ``F = S * J = sum_i s_i loss_i + ||W||^2 / (2 C)``, so
that an unpenalised fit's covariance is statsmodels' ``Logit(...).cov_params()``.

Notation: ``theta`` the parameters (``coef_.ravel()``, then ``intercept_``),
``H`` the Hessian of ``F``, ``G`` the per-sample gradients of the unweighted
losses (rows), ``s`` the sample weights (times class weights), ``Z_k`` the
design of class ``k``: ``Z_k[i]`` is ``x_i`` in class ``k``'s coefficient slots
and 1 in its intercept slot, so that the logit ``z_ik = Z_k[i] . theta`` (never
formed: :func:`leverage` works on the blocks of ``H^+`` instead).

Multinomial models: shifting every class's parameters by the same vector
changes no probability, so unpenalised softmax parameters are not
identifiable. Like statsmodels' ``MNLogit``, the reports give each class
``k >= 1`` against the first class: ``theta_k - theta_0``, with covariance
``A Sigma A^T``; ``Sigma`` uses the Moore-Penrose inverse of ``H``, whose null
space (the shared shift) ``A`` removes, so the result does not depend on how
the fit happened to split the shift.
"""

import numpy as np
import torch

from ._curvature import CHUNK_NUMBERS, _augmented, class_major_order, jacobi_scaled

# Relative size (to the largest eigenvalue of the Jacobi-scaled Hessian) at or below
# which an eigenvalue other than the known null directions makes the Hessian singular.
SINGULAR_RELATIVE = 1e-12

KINDS = ("auto", "nonrobust", "HC0", "HC1", "HC2", "HC3", "sandwich", "laplace", "bootstrap")


def pseudo_inverse(H, null_dims):
    """``H^+`` dropping the ``null_dims`` smallest eigenvalues (known null directions).

    Singularity is judged on the Jacobi-scaled ``D^-1/2 H D^-1/2`` (unit
    diagonal), whose spectrum does not depend on the features' units: on raw
    columns spanning six decades of scale, ``H``'s own eigenvalues span
    sixteen, although no coefficient is less identified than with
    standardised columns (statsmodels gives their standard errors). Raises
    ValueError when another eigenvalue of the scaled matrix is (numerically)
    zero: collinear features, or perfect separation. With null directions the
    inverse from the scaled matrix is projected onto the complement of ``H``'s
    null space: the Moore-Penrose inverse.
    """
    scaled, s = jacobi_scaled(H)
    eig, vec = torch.linalg.eigh(scaled)
    scale = float(eig[-1].abs()) or 1.0
    kept = eig[null_dims:]
    if float(kept[0]) <= SINGULAR_RELATIVE * scale:
        raise ValueError(
            "The Hessian of the fitted objective is singular (the smallest eigenvalue of its "
            f"Jacobi-scaled form is {float(kept[0]):.3g} against a largest of {scale:.3g}): the "
            "features are collinear, or the classes are (quasi-)separated, so some coefficients "
            "are not identified and have no finite standard error. Fit with a penalty (a finite "
            "C) or use kind='bootstrap'."
        )
    V = vec[:, null_dims:] * s[:, None]  # D^-1/2 times the scaled matrix's eigenvectors
    inverse = (V / kept) @ V.T
    if null_dims:
        # H's null space is D^-1/2 times the scaled matrix's; project it out.
        null, _ = torch.linalg.qr(vec[:, :null_dims] * s[:, None])
        P = torch.eye(len(H), dtype=H.dtype, device=H.device) - null @ null.T
        inverse = P @ inverse @ P
    return inverse


def reference_map(n_outputs, n_features, fit_intercept, dtype):
    """``A`` mapping the flat parameters to class ``k >= 1`` minus class 0 (MNLogit's)."""
    K, d = n_outputs, n_features
    P = K * d + (K if fit_intercept else 0)
    rows = (K - 1) * (d + (1 if fit_intercept else 0))
    A = torch.zeros(rows, P, dtype=dtype)
    r = 0
    for k in range(1, K):
        for j in range(d):
            A[r, k * d + j] = 1.0
            A[r, j] = -1.0
            r += 1
    if fit_intercept:
        for k in range(1, K):
            A[r, K * d + k] = 1.0
            A[r, K * d] = -1.0
            r += 1
    return A


def meat(G, s, correction=None):
    """``sum_i s_i^2 g_i g_i^T`` (each term divided by ``correction_i`` if given)."""
    w = s * s
    if correction is not None:
        w = w / correction
    return (G * w[:, None]).T @ G


def sandwich(H_inv, M):
    return H_inv @ M @ H_inv


def leverage(X, A_logit, H_inv, n_outputs, fit_intercept):
    """Generalised leverage ``h_i = tr(H^+ H_i)``, ``H_i`` sample ``i``'s Hessian term.

    ``H_i = sum_kl A_i[k, l] Z_k[i] Z_l[i]^T`` with ``A_i`` the weighted logit
    curvature, so ``h_i = sum_kl A_i[k, l] xa_i^T B_kl xa_i``, ``xa_i = [x_i, 1]``
    and ``B_kl`` the ``(m, m)`` block of ``H^+`` between class ``k``'s and class
    ``l``'s parameters; for the binary model ``s_i p_i (1 - p_i) xa_i^T H^-1
    xa_i``, the diagonal of the GLM hat matrix. Rows go through in blocks of
    ``rows x K^2 m`` numbers (at most :data:`~sktorch_lr._curvature.CHUNK_NUMBERS`):
    the ``(K, n, P)`` class designs this once multiplied took ``K`` times the
    work and 2.2 GB for 30,000 x 30 with 10 classes.
    """
    n, d = X.shape
    K = n_outputs
    m = d + int(fit_intercept)
    order = class_major_order(K, d, fit_intercept, H_inv.device)
    # (m, K * K * m): row j holds B_kl[j, :] for every (k, l).
    B = H_inv[order][:, order].view(K, m, K, m).permute(1, 0, 2, 3).reshape(m, K * K * m)
    h = X.new_empty(n)
    step = max(1, CHUNK_NUMBERS // (K * K * m))
    for start in range(0, n, step):
        rows = _augmented(X[start : start + step], fit_intercept)
        Q = ((rows @ B).view(len(rows), K, K, m) * rows[:, None, None, :]).sum(-1)
        A = A_logit[start : start + step]
        h[start : start + step] = (A * Q).sum((1, 2))
    return h


def normal_table(params, cov, alpha):
    """``(std_err, z, p_value, ci_low, ci_high)`` from the normal approximation."""
    from scipy.stats import norm

    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = params / se
    p = 2.0 * norm.sf(np.abs(z))
    q = norm.ppf(1.0 - alpha / 2.0)
    return se, z, p, params - q * se, params + q * se


def multinomial_bootstrap_counts(n, n_resamples, random_state):
    """Resample counts, shape ``(n_resamples, n)``, each row summing to ``n``.

    Fitting with the counts as sample weights is fitting the resampled rows.
    """
    rng = np.random.default_rng(random_state)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)


def check_finite(matrix, what):
    if not bool(torch.isfinite(torch.as_tensor(matrix)).all()):
        raise ValueError(f"The {what} is not finite: check the fitted model and the data.")
    return matrix


def hc_correction(kind, n, p, h):
    """The small-sample factor (HC1) or per-sample leverage divisors (HC2, HC3)."""
    if kind == "HC1":
        return n / max(n - p, 1), None
    if kind == "HC2":
        return 1.0, 1.0 - h
    if kind == "HC3":
        return 1.0, (1.0 - h) ** 2
    return 1.0, None


# Logits beyond this make probabilities 0 or 1 to float64: a sign of separation.
SEPARATION_LOGIT = 30.0


def row_labels(feature_names, classes, fit_intercept):
    """Row names of the reports: features (per class against the first), then intercepts."""
    if classes is None:  # binary
        return list(feature_names) + (["intercept"] if fit_intercept else [])
    base = classes[0]
    labels = [f"{c} vs {base}: {f}" for c in classes[1:] for f in feature_names]
    if fit_intercept:
        labels += [f"{c} vs {base}: intercept" for c in classes[1:]]
    return labels
