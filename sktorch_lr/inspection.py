"""Look inside a fitted :class:`~sktorch_lr.TorchLogisticRegression` with autograd.

Every quantity comes twice: from autograd on the package's one objective
(``sktorch_lr._objective.objective``, the function training minimises) and
from its closed form, so what a user sees can be trusted. All computations are
in float64 on the CPU; nothing here changes the estimator, and no ``.grad`` is
left behind from one call to the next (gradients are taken with
:func:`torch.autograd.grad` and :mod:`torch.func`, which return them instead
of accumulating them).

Parameters are ordered as ``coef_.ravel()`` then ``intercept_`` (when the model
has one), the order of :meth:`GradientInspector.per_sample_gradients` columns
and of the Hessian's rows.
"""

import functools
import math
import numbers
import warnings

import numpy as np
import torch
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from . import _inference
from ._base import TorchLinearClassifier, _check_type
from ._curvature import (
    NULL_EIGENVALUE,
    autograd_hessian,
    extreme_eigenvalues,
    heavy_ball_rule,
    linear_model_hessian,
    logit_curvature,
    smooth_objective_of_theta,
    split_theta,
)
from ._objective import linear_logits, objective, per_sample_loss
from ._threads import threads_for

__all__ = ["GradientInspector"]

# Sample counted as saturated when the naive float32 Sigmoid + BCELoss gradient
# with respect to its logit is off by more than this fraction of the true one.
SATURATION_RELATIVE_ERROR = 0.01
# The inference's Newton steps from the inspected parameters stop once a step is
# below this many standard errors (the Hessian's metric). Entries of a covariance
# between nearly uncorrelated parameters move by about this distance over their
# correlation, relatively: at 1e-6 a drawn problem's HC0 entry of correlation 8e-5
# stopped 1.5e-7 standard errors short and was 6e-5 off statsmodels' (tol=1e-13) ...
POLISH_TOL = 1e-9
# ... or after this many steps (a converged fit needs one, a stopped one a few).
POLISH_MAX_STEPS = 8
# Parameters farther than this many standard errors from the optimum are not a
# fit of the inspected data (a fit stopped by tol is within tol * sqrt(S)): the
# inference stays at them.
POLISH_MAX_START = 100.0
# Past the logits of separation (SEPARATION_LOGIT), a step is taken only where the
# squared distance falls at least this many times: Newton's quadratic convergence to
# an optimum that exists (quasi-separated data), not the steady march of separated
# data towards infinity (there each step falls about e times).
POLISH_SEPARATED_FALL = 100.0
# The inference centres the columns (_centring_shift) when one column's mean is more
# than this many of its standard deviations from zero (offsets cost their square in
# cancellation: at one standard deviation, a factor of two on rounding), the
# standard deviations estimated on this many evenly strided rows.
CENTRING_OFFSET = 1.0
CENTRING_ROWS = 1024


def _on_threads_for_its_size(method):
    """Run a public method on :func:`~sktorch_lr._threads.threads_for` the Hessian's
    multiply-adds (rows x parameters^2, the inspector's largest pass): small problems
    on one thread, as fits and predictions. On two threads while another process kept
    a core busy, ``summary()`` of standardised breast cancer took 8.5 ms against 3.5.
    Nested calls (``summary`` calls ``covariance``) keep the outer setting."""

    @functools.wraps(method)
    def on_threads(self, *args, **kwargs):
        with threads_for(len(self._X) * self.n_params**2):
            return method(self, *args, **kwargs)

    return on_threads


def _check_inspectable(estimator):
    if isinstance(estimator, TorchLinearClassifier):
        return
    if hasattr(estimator, "steps"):
        hint = (
            "For a pipeline, inspect its last step on the transformed data: "
            "GradientInspector(pipe[-1], pipe[:-1].transform(X), y)."
        )
    else:
        hint = "Fit a TorchLogisticRegression (the same objective as scikit-learn's) to inspect it."
    raise TypeError(
        "GradientInspector inspects a TorchLogisticRegression or TorchLogisticRegressionCV, "
        f"got {type(estimator).__name__}. {hint}"
    )


class GradientInspector:
    """Gradients, per-sample gradients, Hessian and step sizes of a fitted model.

    Parameters
    ----------
    estimator : TorchLogisticRegression or TorchLogisticRegressionCV
        A fitted estimator. It is read, never changed. (For a pipeline, inspect
        its last step on the transformed data: ``GradientInspector(pipe[-1],
        pipe[:-1].transform(X), y)``.)
    X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
        Data on which the objective is evaluated (sparse input is densified).
    y : array-like of shape (n_samples,)
        Labels among ``estimator.classes_``.
    sample_weight : array-like of shape (n_samples,), default=None
        Multiplied by the estimator's ``class_weight``, as in ``fit``.
    coef : array-like of shape like ``coef_``, default=None
        Evaluate at these coefficients instead of the fitted ones (the
        inference too: it is not polished to the optimum, see :meth:`params`).
    intercept : array-like of shape like ``intercept_``, default=None
        Evaluate at this intercept instead of the fitted one.

    Notes
    -----
    With ``z_i = W x_i + b``, ``p_i = sigmoid(z_i)`` (or ``softmax``), weights
    ``s_i`` summing to ``S``, and penalty strengths ``a = (1 - l1_ratio) / (C S)``,
    ``c = l1_ratio / (C S)``, the closed forms checked here are

    - gradient: ``dJ/dW = sum_i s_i (p_i - y_i) x_i^T / S + a W + c sign(W)``,
      ``dJ/db = sum_i s_i (p_i - y_i) / S``;
    - per-sample gradient of ``loss_i``: ``(p_i - y_i) [x_i, 1]``;
    - Hessian: ``sum_i s_i (diag(p_i) - p_i p_i^T) (x) [x_i, 1][x_i, 1]^T / S``
      plus ``a`` on the coefficients' diagonal (the L1 part has no curvature
      away from zero), with ``p_i (1 - p_i)`` for the binary model.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sktorch_lr import TorchLogisticRegression
    >>> from sktorch_lr.inspection import GradientInspector
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = TorchLogisticRegression().fit(X, y)
    >>> inspector = GradientInspector(clf, X, y)
    >>> report = inspector.gradient()
    >>> report["max_abs_error"] < 1e-12
    True
    >>> inspector.per_sample_gradients().shape
    (150, 15)
    """

    def __init__(self, estimator, X, y, sample_weight=None, *, coef=None, intercept=None):
        _check_inspectable(estimator)
        check_is_fitted(estimator)
        self.estimator = estimator
        # Inference on the estimator's own parameters polishes them (see _polish).
        self._polishable = coef is None and intercept is None
        self._inputs = (X, y, sample_weight)
        # Set together by _polish, on the first inference call: the (centred) parameters the
        # inference is about, the logit and Hessian pieces there, and H^-1.
        self._estimate = None
        self._logit_cache = None
        self._hessian_cache = None
        self._hessian_inverse_cache = None
        data, penalty = estimator._training_problem(
            X, y, sample_weight, dtype=torch.float64, device=torch.device("cpu")
        )
        X_t, y_t, sw_t = data.full()
        if X_t.layout == torch.sparse_coo:
            X_t = X_t.to_dense()
        self._X, self._y, self._sw = X_t, y_t, sw_t
        self._S = data.weight_sum
        # The inference's own parametrisation (see _centring_shift): centred columns.
        self._shift = _centring_shift(X_t, sw_t) if estimator.fit_intercept else None
        self._Xc = X_t if self._shift is None else X_t - self._shift
        self._penalty = penalty
        self._fit_intercept = bool(estimator.fit_intercept)
        self._n_outputs = estimator.coef_.shape[0]
        self._n_features = estimator.coef_.shape[1]
        coef = estimator.coef_ if coef is None else np.asarray(coef, dtype=np.float64)
        if coef.shape != estimator.coef_.shape:
            raise ValueError(f"coef must have shape {estimator.coef_.shape}, got {coef.shape}.")
        parts = [torch.as_tensor(coef, dtype=torch.float64).reshape(-1)]
        if self._fit_intercept:
            intercept = (
                estimator.intercept_ if intercept is None else np.asarray(intercept, np.float64)
            )
            if intercept.shape != estimator.intercept_.shape:
                raise ValueError(
                    f"intercept must have shape {estimator.intercept_.shape}, "
                    f"got {intercept.shape}."
                )
            parts.append(torch.as_tensor(intercept, dtype=torch.float64).reshape(-1))
        self._theta = torch.cat(parts).detach()

    # ----------------------------------------------------------- helpers

    @property
    def n_params(self):
        return self._theta.numel()

    def _split(self, theta):
        return split_theta(theta, self._n_outputs, self._n_features, self._fit_intercept)

    def _objective(self, theta, include_l1=True):
        coef, intercept = self._split(theta)
        return objective(
            coef,
            intercept,
            self._X,
            self._y,
            self._sw,
            self._penalty,
            normalizer=self._S,
            include_l1=include_l1,
        )

    def _smooth(self):
        return smooth_objective_of_theta(
            self._X, self._y, self._sw, self._penalty, self._S, self._n_outputs, self._fit_intercept
        )

    def _as_report(self, theta_vector):
        coef, intercept = self._split(theta_vector.detach())
        return {
            "coef": coef.numpy().copy(),
            "intercept": None if intercept is None else intercept.numpy().copy(),
        }

    def _probabilities_and_residuals(self):
        """``P`` (n, K) and ``R = P - Y`` (n, K) at the inspected parameters."""
        coef, intercept = self._split(self._theta)
        z = linear_logits(self._X, coef, intercept)
        if self._n_outputs == 1:
            p = torch.sigmoid(z)
            r = p - self._y[:, None]
        else:
            p = torch.softmax(z, dim=1)
            r = p - torch.nn.functional.one_hot(self._y, self._n_outputs).to(p.dtype)
        return p, r

    def _weights(self):
        n = len(self._X)
        sw = self._sw if self._sw is not None else torch.ones(n, dtype=torch.float64)
        return sw / self._S

    def _flatten_blocks(self, coef_block, intercept_block):
        parts = [coef_block.reshape(-1)]
        if self._fit_intercept:
            parts.append(intercept_block.reshape(-1))
        return torch.cat(parts)

    # ---------------------------------------------------------- gradient

    @_on_threads_for_its_size
    def gradient(self):
        """The objective's gradient by autograd and by its closed form.

        The L1 part contributes ``l1 * sign(W)`` (zero where ``W`` is zero),
        as autograd differentiates ``|W|``.

        Returns
        -------
        report : Bunch
            ``autograd`` and ``analytic``, each ``{"coef": array shaped like
            coef_, "intercept": array shaped like intercept_ or None}``, and
            ``max_abs_error`` between them.
        """
        theta = self._theta.clone().requires_grad_(True)
        (g_auto,) = torch.autograd.grad(self._objective(theta), theta)
        _, r = self._probabilities_and_residuals()
        w = self._weights()[:, None]
        coef, _ = self._split(self._theta)
        g_coef = (w * r).T @ self._X + self._penalty.l2 * coef + self._penalty.l1 * coef.sign()
        g_int = (w * r).sum(0)
        g_closed = self._flatten_blocks(g_coef, g_int)
        return Bunch(
            autograd=self._as_report(g_auto),
            analytic=self._as_report(g_closed),
            max_abs_error=float((g_auto - g_closed).abs().max()),
        )

    @_on_threads_for_its_size
    def per_sample_gradients(self, method="autograd"):
        """Gradient of each sample's own loss (no weight, no penalty).

        Parameters
        ----------
        method : {"autograd", "analytic"}, default="autograd"
            ``"autograd"`` uses ``torch.func.vmap(torch.func.grad(...))`` over
            the samples; ``"analytic"`` the closed form ``(p_i - y_i) [x_i, 1]``.

        Returns
        -------
        grads : ndarray of shape (n_samples, n_params)
            Columns ordered as ``coef_.ravel()`` then ``intercept_``.
        """
        if method == "analytic":
            _, r = self._probabilities_and_residuals()
            coef_part = (r[:, :, None] * self._X[:, None, :]).reshape(len(self._X), -1)
            parts = [coef_part] + ([r] if self._fit_intercept else [])
            return torch.cat(parts, dim=1).numpy()
        if method != "autograd":
            raise ValueError(f"method must be 'autograd' or 'analytic', got {method!r}.")
        from torch.func import grad, vmap

        def loss_one(theta, x, y):
            coef, intercept = self._split(theta)
            return per_sample_loss(linear_logits(x[None, :], coef, intercept), y[None])[0]

        grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(self._theta, self._X, self._y)
        return grads.detach().numpy()

    # ----------------------------------------------------------- Hessian

    @_on_threads_for_its_size
    def hessian(self):
        """The Hessian of the objective by autograd and by its closed form.

        Returns
        -------
        report : Bunch
            ``autograd`` and ``analytic`` (n_params x n_params ndarrays),
            ``max_abs_error``, ``eigenvalues`` (ascending, of the autograd
            Hessian), ``condition_number`` (largest over smallest eigenvalue;
            ``inf`` when the smallest is not positive, as along the softmax's
            shared shift of a multinomial intercept) and
            ``effective_condition_number`` (largest over the smallest
            eigenvalue that is not numerically zero: the one that limits
            training, since the gradient has no component along exact zeros).
        """
        H_auto = autograd_hessian(self._smooth(), self._theta)
        H_closed = self._closed_form_hessian()
        eig = torch.linalg.eigvalsh(H_auto)
        largest, smallest = float(eig[-1]), float(eig[0])
        curved = eig[eig > NULL_EIGENVALUE * largest]
        return Bunch(
            autograd=H_auto.numpy(),
            analytic=H_closed.numpy(),
            max_abs_error=float((H_auto - H_closed).abs().max()),
            eigenvalues=eig.numpy(),
            condition_number=largest / smallest if smallest > 0 else math.inf,
            effective_condition_number=largest / float(curved[0]),
        )

    def _closed_form_hessian(self):
        p, _ = self._probabilities_and_residuals()
        if self._n_outputs == 1:
            A = (p * (1 - p))[:, :, None]  # (n, 1, 1)
        else:
            A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (n, K, K)
        A = A * self._weights()[:, None, None]
        return linear_model_hessian(self._X, A, self._penalty.l2, self._fit_intercept)

    # ----------------------------------------------------- step sizes

    @_on_threads_for_its_size
    def recommend_hyperparameters(self):
        """Heavy-ball step size and momentum for the curvature measured here.

        With ``L`` and ``mu`` the largest and smallest (non-null) Hessian
        eigenvalues and ``kappa = L / mu``: ``lr = 4 / (sqrt(L) + sqrt(mu))**2``
        and ``momentum = ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))**2`` (Polyak).
        The eigenvalues come from ``sktorch_lr._curvature.extreme_eigenvalues``,
        the same code ``lr="auto"`` uses.

        Returns
        -------
        recommendation : Bunch
            ``lr``, ``momentum``, ``rate`` (predicted error contraction per
            full-batch step), ``epochs_per_decade`` (steps per tenfold error
            reduction), ``L``, ``mu``, ``condition_number`` and ``caveats``.
            ``lr="auto"`` starts from the same values at the same point.
        """
        curvature = extreme_eigenvalues(self._smooth(), self._theta, l2=self._penalty.l2)
        rule = heavy_ball_rule(curvature.L, curvature.mu)
        rate = rule.rate
        return Bunch(
            lr=rule.lr,
            momentum=rule.momentum,
            rate=rate,
            epochs_per_decade=math.log(10) / -math.log(rate) if 0 < rate < 1 else math.inf,
            L=rule.L,
            mu=rule.mu,
            condition_number=rule.condition_number,
            caveats=(
                "Local theory: the rates hold for a quadratic with this Hessian, i.e. near "
                "the point where it was measured; the logistic loss's curvature shrinks as the "
                "fit sharpens, so values measured at the start are conservative near the "
                "optimum and values measured at the optimum may be too long at the start. "
                "Full-batch theory: mini-batch noise needs smaller steps. Polyak's values sit "
                "on the edge of stability on non-quadratic losses; lr='auto' starts from them "
                "and re-measures the curvature, restarts the momentum and shortens the step "
                "when the objective rises."
            ),
        )

    # ------------------------------------------------------------ checks

    @_on_threads_for_its_size
    def check(self, max_rows=64):
        """Finite-difference checks and the saturation count.

        ``torch.autograd.gradcheck`` and ``gradgradcheck`` run in float64 on the
        smooth objective (the L1 part is applied by a proximal step, not by its
        gradient) over at most ``max_rows`` evenly spaced rows; the closed-form
        comparisons use all rows.

        Returns
        -------
        report : Bunch
            ``gradcheck``, ``gradgradcheck`` (bool), ``gradient_max_abs_error``,
            ``per_sample_max_abs_error``, ``hessian_max_abs_error``,
            ``n_saturated`` and ``saturated_fraction``: samples whose logit is so
            large that ``Sigmoid`` followed by ``BCELoss`` (softmax, log and NLL
            for several classes) in float32 would get the gradient with respect
            to the logit more than 1% wrong -- or lose it -- while the
            logits form training uses keeps it; ``max_abs_logit``.
        """
        _check_type(max_rows, "max_rows", numbers.Integral, "an integer")
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows!r}.")
        n = len(self._X)
        rows = torch.linspace(0, n - 1, min(n, int(max_rows))).round().long().unique()
        X, y = self._X[rows], self._y[rows]
        sw = None if self._sw is None else self._sw[rows]
        normalizer = float(len(rows)) if sw is None else float(sw.sum())
        f = smooth_objective_of_theta(
            X, y, sw, self._penalty, normalizer, self._n_outputs, self._fit_intercept
        )
        theta = self._theta.clone().requires_grad_(True)
        # gradgradcheck draws random grad_outputs from torch's global generator:
        # fork it so that checking leaves the caller's random stream untouched.
        with torch.random.fork_rng(devices=[]):
            ok_grad = torch.autograd.gradcheck(f, (theta,), raise_exception=False)
            ok_gradgrad = torch.autograd.gradgradcheck(f, (theta,), raise_exception=False)
        per_sample = np.abs(
            self.per_sample_gradients("autograd") - self.per_sample_gradients("analytic")
        ).max()
        n_sat, max_logit = self._saturation()
        return Bunch(
            gradcheck=bool(ok_grad),
            gradgradcheck=bool(ok_gradgrad),
            gradient_max_abs_error=self.gradient()["max_abs_error"],
            per_sample_max_abs_error=float(per_sample),
            hessian_max_abs_error=self.hessian()["max_abs_error"],
            n_saturated=n_sat,
            saturated_fraction=n_sat / n,
            max_abs_logit=max_logit,
        )

    def _saturation(self):
        coef, intercept = self._split(self._theta)
        z = linear_logits(self._X, coef, intercept)
        exact = self._probabilities_and_residuals()[1]  # d loss_i / d z_i
        z32 = z.float().detach().requires_grad_(True)
        if self._n_outputs == 1:
            naive = torch.nn.BCELoss(reduction="sum")(torch.sigmoid(z32[:, 0]), self._y.float())
        else:
            log_p = torch.log(torch.softmax(z32, dim=1))
            naive = torch.nn.NLLLoss(reduction="sum")(log_p, self._y)
        (g32,) = torch.autograd.grad(naive, z32)
        err = (g32.double() - exact).abs().amax(dim=1)
        scale = exact.abs().amax(dim=1)
        saturated = ~(err <= SATURATION_RELATIVE_ERROR * scale)  # NaN counts as lost
        return int(saturated.sum()), float(z.abs().max())

    # ------------------------------------------------ statistical inference

    def _logit_pieces(self):
        """Each sample's logit derivatives by autograd, checked against their closed forms.

        Returns ``(A, g, max_logit)`` at :meth:`params` (the optimum the
        inference is about): ``A_i = d^2 loss_i / dz_i^2`` of shape
        ``(n, K, K)`` and ``g_i = d loss_i / dz_i`` of shape ``(n, K)``, of the
        unweighted losses, by autograd on the logits (the loss differentiated
        twice, one double backward per class; training takes the cheaper
        Jacobian of the link, :func:`~sktorch_lr._curvature.link_jacobian`,
        which the tests check against this), each checked against
        ``diag(p) - p p^T`` and ``p - y``; and the largest ``|z_i|``. Every
        matrix of the inference is one of these chained through ``nn.Linear``
        (:func:`~sktorch_lr._curvature.linear_model_hessian`,
        :meth:`_chain_through_linear`), whose agreement with the full autograd
        Hessian the tests check; computed once per inspector.
        """
        if self._estimate is None:
            self._polish()
        return self._logit_cache

    def _hessian_pieces(self):
        """``(H, s, A)`` at :meth:`params`: the Hessian of the smooth penalised
        ``F = S * J``, the sample weights ``s_i`` and the weighted logit curvatures
        ``s_i A_i``."""
        if self._estimate is None:
            self._polish()
        return self._hessian_cache

    def _hessian_inverse(self):
        """``H^+`` of :meth:`_hessian_pieces` without the known null directions
        (:func:`~sktorch_lr._inference.pseudo_inverse`, which raises for a
        singular ``H``); computed once."""
        if self._hessian_inverse_cache is None:
            H = self._hessian_pieces()[0]
            self._hessian_inverse_cache = _inference.pseudo_inverse(H, self._null_dims())
        return self._hessian_inverse_cache

    def _pieces_at(self, theta):
        """``_logit_pieces`` and ``_hessian_pieces`` at the centred ``theta``, and the
        gradient of ``F`` (all in the centred parametrisation, see ``__init__``)."""
        coef, intercept = self._split(theta)
        with torch.no_grad():
            logits = linear_logits(self._Xc, coef, intercept)
        A, g = logit_curvature(logits, self._y, None, 1.0)
        if self._n_outputs == 1:
            p = torch.sigmoid(logits)
            A_closed = (p * (1 - p))[:, :, None]
            r = p - self._y[:, None]
        else:
            p = torch.softmax(logits, dim=1)
            A_closed = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
            r = p - torch.nn.functional.one_hot(self._y, self._n_outputs).to(p.dtype)
        _check_agreement(A, A_closed, "logits' Hessian")
        _check_agreement(g, r, "per-sample gradient")
        A, g = A.detach(), g.detach()
        n = len(self._X)
        s = self._sw if self._sw is not None else torch.ones(n, dtype=torch.float64)
        l2 = self._penalty.l2 * self._S
        A_weighted = A * s[:, None, None]
        H = linear_model_hessian(self._Xc, A_weighted, l2, self._fit_intercept)
        g_weighted = g * s[:, None]
        g_F = self._flatten_blocks(g_weighted.T @ self._Xc + l2 * coef, g_weighted.sum(0))
        return (A, g, float(logits.abs().max())), (H, s, A_weighted), g_F

    def _polish(self):
        """Newton steps from the inspected parameters to the optimum the inference is about.

        The estimator stops once its Newton decrement of the per-sample
        objective ``J`` is below ``tol``; in the metric of the covariance (the
        Hessian of ``F = S * J``) that leaves it up to ``tol * sqrt(S)``
        standard errors from the optimum: 0.04 for ``tol=1e-4`` on 200,000
        rows, enough to move z-values and p-values in their third digit. So the
        inference first takes full Newton steps in float64 on all rows (the
        Hessian it needs anyway), until the step is under
        :data:`POLISH_TOL` standard errors, at most :data:`POLISH_MAX_STEPS`
        and only while that distance falls; from a converged fit that is one
        or two steps.
        Past the logits of separation (unpenalised, some ``|z_i|`` over
        ``SEPARATION_LOGIT``) only while the squared distance falls
        :data:`POLISH_SEPARATED_FALL` times a step: quasi-separated data whose
        optimum exists get it (statsmodels reaches it too), separated data keep
        the fit's parameters instead of marching towards infinity.
        Not with an L1 part (no Hessian-based inference), nor for parameters
        given to the inspector or more than :data:`POLISH_MAX_START` standard
        errors from the optimum (not a fit of these data).
        """
        theta = self._centred(self._theta)
        current = self._pieces_at(theta)
        distance, H_inv = self._newton_distance(*current)
        polish = self._polishable and distance is not None and distance <= POLISH_MAX_START**2
        for _ in range(POLISH_MAX_STEPS if polish else 0):
            if distance <= POLISH_TOL**2:
                break
            candidate = theta - H_inv @ current[2]
            following = self._pieces_at(candidate)
            next_distance, next_H_inv = self._newton_distance(*following)
            separated = self._separated(max(current[0][2], following[0][2]))
            needed = distance / POLISH_SEPARATED_FALL if separated else distance
            if next_distance is None or not next_distance < needed:
                break  # no progress in this precision: keep the last point
            theta, current, distance, H_inv = candidate, following, next_distance, next_H_inv
        self._estimate = theta
        self._logit_cache, self._hessian_cache = current[0], current[1]
        self._hessian_inverse_cache = H_inv

    def _newton_distance(self, pieces, hessian, g_F):
        """``(distance**2, H^+)``: the squared distance from the optimum in standard
        errors (``g^T H^+ g``, Newton's step being ``H^+ g``) and the inverse, or
        ``(None, None)`` where no step applies (an L1 part, a singular Hessian:
        :meth:`_hessian_inverse` then says why)."""
        if self._penalty.l1:
            return None, None
        try:
            H_inv = _inference.pseudo_inverse(hessian[0], self._null_dims())
        except ValueError:
            return None, None
        return float(g_F @ H_inv @ g_F), H_inv

    def _sample_gradients(self):
        """The per-sample gradients of the unweighted losses, ``(n, n_params)``."""
        return self._chain_through_linear(self._logit_pieces()[1])

    def _chain_through_linear(self, g_logits):
        """Per-sample parameter gradients from per-sample logit gradients ``(n, K)``."""
        coef_part = (g_logits[:, :, None] * self._Xc[:, None, :]).reshape(len(self._Xc), -1)
        parts = [coef_part] + ([g_logits] if self._fit_intercept else [])
        return torch.cat(parts, dim=1)

    def _centred(self, theta):
        """Raw parameters ``(W, b)`` to the centred ``(W, c = b + W mean)``."""
        if self._shift is None:
            return theta
        coef, intercept = self._split(theta)
        return self._flatten_blocks(coef, intercept + coef @ self._shift)

    def _raw(self, theta):
        """Centred parameters ``(W, c)`` back to the raw ``(W, b = c - W mean)``."""
        if self._shift is None:
            return theta
        coef, intercept = self._split(theta)
        return self._flatten_blocks(coef, intercept - coef @ self._shift)

    def _raw_map(self):
        """``M^-1`` ``(P, P)``, taking centred parameters to raw ones (``b = c - W mean``).

        Covariances map as ``M^-1 Sigma M^-T``; gradients, the other way, as
        ``g_centred^T = g_raw^T M^-1``. None where nothing is centred (no intercept,
        or every column's mean near zero: :func:`_centring_shift`).
        """
        if self._shift is None:
            return None
        K, d = self._n_outputs, self._n_features
        M_inv = torch.eye(self.n_params, dtype=torch.float64)
        for k in range(K):
            M_inv[K * d + k, k * d : (k + 1) * d] = -self._shift
        return M_inv

    def _from_centred(self, vectors_or_matrix, both_sides=False):
        """Parameters (rows of ``vectors_or_matrix``) or a covariance (``both_sides``)
        from the centred parametrisation to the reported one (:meth:`_report`)."""
        M_inv = self._raw_map()
        if M_inv is not None:
            if both_sides:
                vectors_or_matrix = M_inv @ vectors_or_matrix @ M_inv.T
            else:
                vectors_or_matrix = vectors_or_matrix @ M_inv.T
        return self._report(vectors_or_matrix, both_sides)

    def _null_dims(self):
        """Exact null directions of ``H``: the softmax's shared shifts."""
        if self._n_outputs == 1:
            return 0
        unpenalised = not self._penalty.l2
        return int(self._fit_intercept) + (self._n_features if unpenalised else 0)

    def _report_map(self):
        """``A`` from the flat parameters to the reported ones (identity for binary)."""
        if self._n_outputs == 1:
            return None
        return _inference.reference_map(
            self._n_outputs, self._n_features, self._fit_intercept, torch.float64
        )

    def _report(self, vector_or_matrix, both_sides=False):
        A = self._report_map()
        if A is None:
            return vector_or_matrix
        if both_sides:
            return A @ vector_or_matrix @ A.T
        return vector_or_matrix @ A.T

    def _kind(self, kind):
        if kind not in _inference.KINDS:
            raise ValueError(f"kind must be one of {_inference.KINDS}, got {kind!r}.")
        if self._penalty.l1 and kind != "bootstrap":
            raise ValueError(
                "The fit has an L1 penalty (l1_ratio > 0): its exact zeros make the objective "
                "non-differentiable there, so no Hessian-based covariance is valid. Use "
                "kind='bootstrap', which refits on resamples."
            )
        if kind == "auto":
            return "nonrobust" if not self._penalty.l2 else "sandwich"
        return kind

    @_on_threads_for_its_size
    def covariance(self, kind="auto", *, n_resamples=200, random_state=None):
        """Covariance of the parameters, on the scale of the penalised negative log-likelihood.

        Parameters are ordered as ``coef_.ravel()`` then ``intercept_``; for a
        multinomial model each class ``k >= 1`` against the first,
        ``theta_k - theta_0`` (statsmodels' ``MNLogit`` parametrisation).
        With ``F = sum_i s_i loss_i + ||W||^2 / (2 C)``, ``H`` its Hessian and
        ``g_i`` the gradient of sample ``i``'s loss:

        - ``"nonrobust"``: ``H^-1`` (for ``C=inf``, statsmodels'
          ``Logit(...).fit().cov_params()``);
        - ``"HC0"``: ``H^-1 (sum_i s_i^2 g_i g_i^T) H^-1``; ``"HC1"`` times
          ``n / (n - p)`` (``n`` every row given, weight 0 included, as
          R's ``vcovHC`` counts them); ``"HC2"`` and ``"HC3"`` divide each term by
          ``1 - h_i`` and ``(1 - h_i)^2``, ``h_i`` the leverage (as R's
          ``sandwich::vcovHC``);
        - ``"sandwich"``: the same as ``"HC0"`` with the penalised ``H``: the
          frequentist covariance of the ridge estimator;
        - ``"laplace"``: ``H^-1`` with the penalised ``H``: the posterior
          covariance of the Bayesian reading of the L2 penalty (a Gaussian prior
          of variance ``C``);
        - ``"auto"``: ``"nonrobust"`` without a penalty, ``"sandwich"`` with one;
        - ``"bootstrap"``: the covariance of the parameters refitted on
          ``n_resamples`` resamples of the rows (drawn as counts used as sample
          weights). Without an L1 part the resamples are one batch
          (:class:`~sktorch_lr.TorchLogisticRegressionCV`'s solver: one matrix
          product per epoch for all of them); with one, they are refitted one
          after another, warm-started from the fit. The only valid kind for an
          L1 penalty.

        Returns
        -------
        cov : ndarray of shape (n_params, n_params)

        Raises
        ------
        ValueError
            For an L1 penalty (any kind but ``"bootstrap"``), or a singular
            Hessian (separation, collinear features without a penalty).
        """
        kind = self._kind(kind)
        if kind == "bootstrap":
            return self._bootstrap(n_resamples, random_state)
        H, s, A = self._hessian_pieces()
        self._warn_separation()
        H_inv = self._hessian_inverse()
        if kind in ("nonrobust", "laplace"):
            cov = H_inv
        else:
            G = self._sample_gradients()
            n = len(G)
            p = H.shape[0] - self._null_dims()
            factor, correction = _inference.hc_correction(
                kind, n, p, self._leverage(H_inv, A) if kind in ("HC2", "HC3") else None
            )
            cov = factor * _inference.sandwich(H_inv, _inference.meat(G, s, correction))
        return _inference.check_finite(
            self._from_centred(cov, both_sides=True), "covariance"
        ).numpy()

    @_on_threads_for_its_size
    def params(self):
        """The optimum the inference is about, in the order (and parametrisation) of
        :meth:`covariance`.

        The inspected parameters (the estimator's, or ``coef`` and
        ``intercept``) polished by Newton steps in float64 on all rows until
        they are within 1e-6 standard errors of the optimum: a fit
        stopped by its ``tol`` can be a few hundredths of a standard error
        away, which would show in the p-values. With an L1 part, separated
        classes, ``coef`` or ``intercept`` given to the inspector, or
        parameters more than 100 standard errors away
        (data other than the fit's), the inspected parameters as they are.
        """
        if self._estimate is None:
            self._polish()
        return self._from_centred(self._estimate).numpy().copy()

    @_on_threads_for_its_size
    def summary(self, kind="auto", alpha=0.05, **kwargs):
        """Coefficients, standard errors, z, p-values and confidence intervals.

        A normal approximation with :meth:`covariance` of the given ``kind``
        (keyword arguments go to it), as statsmodels' ``Logit`` reports.

        Returns
        -------
        table : pandas.DataFrame
            One row per parameter (feature names or ``x0, x1, ...``, then
            ``intercept``; for multinomial models ``"<class> vs <first class>:
            <name>"``), columns ``coef, std_err, z, p_value, ci_low, ci_high``.
            A parameter whose standard error is 0 (with ``kind="bootstrap"``,
            an L1 zero in every resample) has no z statistic: its ``z`` and
            ``p_value`` are NaN, and a ``UserWarning`` names it.
        """
        import pandas as pd

        _check_type(alpha, "alpha", numbers.Real, "a number in (0, 1)")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")
        params = self.params()
        cov = self.covariance(kind, **kwargs)
        se, z, p, low, high = _inference.normal_table(params, cov, alpha)
        est = self.estimator
        names = getattr(est, "feature_names_in_", None)
        if names is None:
            names = [f"x{j}" for j in range(self._n_features)]
        classes = None if self._n_outputs == 1 else list(est.classes_)
        index = _inference.row_labels([str(n) for n in names], classes, self._fit_intercept)
        fixed = [label for label, e in zip(index, se, strict=True) if e == 0.0]
        if fixed:
            warnings.warn(
                f"{len(fixed)} parameter(s) have a standard error of 0 under kind={kind!r} "
                f"({', '.join(map(str, fixed[:5]))}{', ...' if len(fixed) > 5 else ''}): "
                "no resample moved them (an L1 zero stays zero), so their z and p_value "
                "are NaN.",
                UserWarning,
                stacklevel=2,
            )
        return pd.DataFrame(
            {"coef": params, "std_err": se, "z": z, "p_value": p, "ci_low": low, "ci_high": high},
            index=index,
        )

    def _leverage(self, H_inv, A):
        return _inference.leverage(self._Xc, A, H_inv, self._n_outputs, self._fit_intercept)

    @_on_threads_for_its_size
    def influence(self):
        """Leverage, Cook's distance and DFBETA of every training sample.

        With the (penalised) Hessian ``H`` of ``F``: the leverage
        ``h_i = tr(H^-1 H_i)`` (``H_i`` sample ``i``'s term of ``H``; for the
        binary model the diagonal of the GLM hat matrix), the one-step
        ``dfbeta_i = -H^-1 s_i g_i / (1 - h_i)``, an estimate of
        ``params - params_without_i``, and Cook's distance
        ``dfbeta_i^T H dfbeta_i / p``. For ``C=inf`` these are statsmodels'
        ``GLMInfluence`` ``hat_matrix_diag``, ``cooks_distance[0]`` and
        ``d_params``; penalised fits get the same measures of the penalised
        estimator. :meth:`loo_refit` gives the exact leave-one-out parameters.

        Returns
        -------
        influence : Bunch
            ``leverage`` (n_samples,), ``cooks_distance`` (n_samples,) and
            ``dfbeta`` (n_samples, n_params), parameters as in :meth:`covariance`.
        """
        if self._penalty.l1:
            self._kind("nonrobust")  # the L1 error
        H, s, A = self._hessian_pieces()
        G = self._sample_gradients()
        H_inv = self._hessian_inverse()
        h = self._leverage(H_inv, A)
        dfbeta = -(G * (s / (1.0 - h))[:, None]) @ H_inv
        p = H.shape[0] - self._null_dims()
        cooks = ((dfbeta @ H) * dfbeta).sum(1) / p
        return Bunch(
            leverage=h.numpy(),
            cooks_distance=cooks.numpy(),
            dfbeta=self._from_centred(dfbeta).numpy(),
        )

    @_on_threads_for_its_size
    def influence_on(self, X_test, y_test):
        """Koh & Liang's influence of each training sample on each test loss.

        ``I[i, j] = grad loss_test_j^T H^-1 s_i g_i``: the predicted change of
        test sample ``j``'s loss when training sample ``i`` is left out (positive:
        leaving it out raises the loss, the sample helps that prediction).

        Returns
        -------
        influence : ndarray of shape (n_train, n_test)
        """
        H, s, _ = self._hessian_pieces()
        G = self._sample_gradients()
        H_inv = self._hessian_inverse()
        coef, intercept = self._split(self._raw(self._estimate))
        test = GradientInspector(
            self.estimator,
            X_test,
            y_test,
            coef=coef.numpy(),
            intercept=None if intercept is None else intercept.numpy(),
        )
        G_test = torch.as_tensor(test.per_sample_gradients("analytic"))
        if self._shift is not None:
            G_test = G_test @ self._raw_map()  # the raw gradients in the centred parametrisation
        return ((G * s[:, None]) @ H_inv @ G_test.T).numpy()

    @_on_threads_for_its_size
    def loo_refit(self, indices, *, tol=1e-10):
        """Exact leave-one-out parameters: a warm-started refit without each sample.

        Each refit gives sample ``i`` zero weight (the other weights as fitted)
        and starts from the fitted parameters, so it takes a few epochs.

        Parameters
        ----------
        indices : int or array-like of int
            Rows of the inspected ``X`` (negative ones count from the end).
        tol : float, default=1e-10
            The refits' ``tol``.

        Returns
        -------
        params : ndarray of shape (len(indices), n_params)
            As in :meth:`covariance`; ``params() - loo_refit([i])[0]`` is what
            ``influence().dfbeta[i]`` estimates.
        """
        X, y, sample_weight = self._inputs
        n = len(self._X)
        rows = np.atleast_1d(np.asarray(indices))
        if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
            raise TypeError(f"indices must be integers (rows of X), got {indices!r}.")
        if rows.size and not (-n <= rows.min() and rows.max() < n):
            raise IndexError(f"indices must be rows of X, in [-{n}, {n}), got {indices!r}.")
        base = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
        out = []
        for i in rows:
            w = base.copy()
            w[i] = 0.0
            out.append(self._refit(X, y, w, tol))
        A = self._report_map()
        return np.asarray(out).reshape(len(rows), self.n_params if A is None else A.shape[0])

    def _refit(self, X, y, sample_weight, tol):
        import copy

        from sklearn.exceptions import ConvergenceWarning

        model = copy.deepcopy(self.estimator)
        model.set_params(warm_start=True, tol=tol, verbose=0, track_gradients=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y, sample_weight=sample_weight)
        theta = [torch.as_tensor(model.coef_, dtype=torch.float64).reshape(-1)]
        if self._fit_intercept:
            theta.append(torch.as_tensor(model.intercept_, dtype=torch.float64).reshape(-1))
        return self._report(torch.cat(theta)).numpy()

    def _bootstrap(self, n_resamples, random_state):
        _check_type(n_resamples, "n_resamples", numbers.Integral, "an integer")
        if n_resamples < 2:
            raise ValueError(f"n_resamples must be at least 2, got {n_resamples!r}.")
        X, y, sample_weight = self._inputs
        n = len(self._X)
        base = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
        counts = _inference.multinomial_bootstrap_counts(n, n_resamples, random_state)
        tol = min(self.estimator.tol, 1e-6)
        params = self._refit_batch(X, y, base * counts, tol)
        if params is None:  # an L1 part, or too wide a model: one warm-started refit each
            params = np.asarray([self._refit(X, y, base * c, tol) for c in counts])
        return np.atleast_2d(np.cov(params.T))

    def _refit_batch(self, X, y, sample_weights, tol):
        """Fits with each row of ``sample_weights``, as one batch (:mod:`sktorch_lr._batch`).

        The resamples share ``X``: one epoch of all of them is one matrix
        product. None where the batch does not apply (an L1 part, or a model
        too wide for a factorised metric).
        """
        from ._base import _effective_weights, _encode
        from ._batch import batch_kind, solve_weightings

        est = self.estimator
        K, d = self._n_outputs, self._n_features
        if self._penalty.l1 or batch_kind(d, K) is None:
            return None
        Xv, yv, _ = est._validate_fit_input(X, y, None, reset=False)
        classes = est.classes_
        y_enc = _encode(yv, classes)
        weights = np.stack(
            [_effective_weights(est.class_weight, classes, y_enc, yv, w) for w in sample_weights]
        )
        C, _ = est._fitted_penalty()
        result = solve_weightings(
            Xv,
            y_enc,
            weights,
            [C] * len(weights),
            n_outputs=K,
            fit_intercept=self._fit_intercept,
            device=torch.device("cpu"),
            dtype=torch.float64,
            max_iter=est.max_iter,
            tol=tol,
        )
        theta = result.coef.reshape(len(weights), -1)
        if result.intercept is not None:
            theta = torch.cat([theta, result.intercept.reshape(len(weights), -1)], 1)
        return np.stack([self._report(t.to(torch.float64)).numpy() for t in theta])

    def _separated(self, max_logit):
        """Whether logits this large mean (nearly) separated classes: without a penalty."""
        return not self._penalty.l2 and max_logit > _inference.SEPARATION_LOGIT

    def _warn_separation(self):
        max_logit = self._logit_pieces()[2]
        if self._separated(max_logit):
            warnings.warn(
                f"Some fitted logits reach {max_logit:.3g}: the classes are (nearly) "
                "separated, the unpenalised coefficients run off towards infinity and their "
                "standard errors are not meaningful. Fit with a penalty (a finite C).",
                UserWarning,
                stacklevel=3,
            )


def _centring_shift(X, sample_weight):
    """The columns' weighted means, where the inference should centre on them, or None.

    The inference (covariances, influence, the polishing Newton steps) runs in the
    parametrisation of centred columns, the intercept absorbing the shift
    (``c = b + W mean``), as the solver's does; :meth:`GradientInspector._raw_map`
    maps its results back. The statistics are the same, but the Hessian is formed
    and inverted without the cancellation of raw offsets: on features like
    ``300 +- 0.01`` covariance entries moved by up to 4e-5 of
    ``sqrt(Sigma_ii Sigma_jj)`` (small ones by 5e-4 of themselves, DFBETA too),
    and an identified softmax Hessian looked singular; centred, 3e-10. Columns
    whose mean is within :data:`CENTRING_OFFSET` standard deviations of zero
    lose nothing to that cancellation; where all are (standardised data), the
    centred copy of ``X`` is skipped (on 200,000 x 50 it cost 20 ms, a tenth of
    fit + summary).
    """
    n = X.shape[0]
    if n < 2:
        return None
    s = sample_weight if sample_weight is not None else torch.ones(n, dtype=X.dtype)
    mean = (s @ X) / s.sum()
    # The spread from evenly strided rows: a test, not a statistic.
    spread = X[:: max(1, n // CENTRING_ROWS)].std(0)
    if not bool((mean.abs() > CENTRING_OFFSET * spread).any()):
        return None
    return mean


def _check_agreement(auto, closed, what):
    """Autograd and the closed form must agree (to rounding), or something is broken."""
    scale = float(closed.abs().max()) or 1.0
    error = float((auto - closed).abs().max())
    if not error <= 1e-8 * scale:
        raise RuntimeError(
            f"The {what} by autograd and by the closed form differ by {error:.3g} "
            f"(scale {scale:.3g}); please report this."
        )
