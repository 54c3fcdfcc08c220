"""
Inspecting a fitted model's gradients and curvature
===================================================

:class:`sktorch_lr.inspection.GradientInspector` computes the gradient, per-sample
gradients and the Hessian with autograd and checks each against its closed form.
The Hessian's spectrum says how fast momentum SGD can go.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.inspection import GradientInspector
from sktorch_lr.plotting import plot_gradient_history

X, y = load_breast_cancer(return_X_y=True)
X = StandardScaler().fit_transform(X)
clf = TorchLogisticRegression(track_gradients=True).fit(X, y)

# %%
# At the fitted parameters the gradient is (nearly) zero; autograd and the closed form agree.
at_fit = GradientInspector(clf, X, y)
print("max |grad| at the fit:", np.abs(at_fit.gradient()["autograd"]["coef"]).max())
print("autograd vs closed form:", at_fit.gradient()["max_abs_error"])
per_sample = at_fit.per_sample_gradients()
print("per-sample gradients:", per_sample.shape)

# %%
# The Hessian at the start (all zeros) and at the optimum: the curvature shrinks as the
# fit sharpens, and the condition number sets the speed of momentum SGD.
at_start = GradientInspector(
    clf, X, y, coef=np.zeros_like(clf.coef_), intercept=np.zeros_like(clf.intercept_)
)
fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
for name, insp in (("start (zeros)", at_start), ("optimum", at_fit)):
    h = insp.hessian()
    print(
        f"{name}: condition number {h['condition_number']:.1f}, "
        f"closed-form error {h['max_abs_error']:.1e}"
    )
    ax.semilogy(
        h["eigenvalues"][::-1], "o-", ms=3, label=f"{name}: kappa = {h['condition_number']:.0f}"
    )
ax.set_xlabel("index (largest first)")
ax.set_ylabel("Hessian eigenvalue")
ax.set_title("Spectrum of the Hessian (breast cancer, C=1)")
ax.legend()

# %%
# Heavy-ball step size and momentum from the curvature at the start, against the
# lesson's lr=0.01, momentum=0.9 (each run to max|grad| <= 1e-5, or 5000 epochs).
import warnings

from sklearn.exceptions import ConvergenceWarning

rec = at_start.recommend_hyperparameters()
print({k: round(rec[k], 4) for k in ("lr", "momentum", "rate", "condition_number")})
common = dict(batch_size=None, tol=1e-5, max_iter=5000)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # the lesson's run stops at 5000
    lesson = TorchLogisticRegression(lr=0.01, momentum=0.9, **common).fit(X, y)
tuned = TorchLogisticRegression(lr=rec["lr"], momentum=rec["momentum"], **common).fit(X, y)
auto = TorchLogisticRegression(**common).fit(X, y)
best = min(min(e.loss_curve_) for e in (lesson, tuned, auto))
fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
for est, label in (
    (lesson, "lr=0.01, momentum=0.9 (the lesson)"),
    (tuned, f"recommended: lr={rec['lr']:.2f}, momentum={rec['momentum']:.2f}"),
    (auto, "lr='auto'"),
):
    ax.semilogy(
        np.arange(1, est.n_iter_ + 1),
        np.array(est.loss_curve_) - best + 1e-12,
        label=f"{label}: {est.n_iter_} epochs",
    )
ax.set_xscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("objective - best objective reached")
ax.set_title("Step sizes from the curvature cut the epochs")
ax.legend(fontsize="small")

# %%
# The training's own gradient history (``track_gradients=True``).
plot_gradient_history(clf)

# %%
# Finite-difference checks, and how many samples a float32 Sigmoid + BCELoss would
# lose the gradient of (the reason training uses logits).
print(at_fit.check())
plt.show()
