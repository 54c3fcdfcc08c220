"""
Sparse models: the L1 regularisation path
=========================================

With ``l1_ratio=1`` the penalty is :math:`\\lVert W\\rVert_1 / (CS)` and small ``C``
sets coefficients exactly to zero. Training takes the L1 part's proximal step in
the measured Hessian's metric (a small quadratic program per step: proximal
Newton), so a default fit stops where its decrement promises, about
``tol**2 / 2`` above the optimum, in a handful of epochs. Here the path over
``C`` on standardised breast cancer, warm-started from one ``C`` to the next,
beside scikit-learn's L1 solver for this objective (saga) at its defaults.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression

X, y = load_breast_cancer(return_X_y=True)
X = StandardScaler().fit_transform(X)
Cs = np.logspace(-2.5, 1.5, 17)


def J(model, C):
    """The objective both estimators minimise (scikit-learn's divided by C * n):
    the mean log-loss plus ``||W||_1 / (C n)``."""
    z = X @ model.coef_[0] + model.intercept_[0]
    return np.mean(np.logaddexp(0.0, z) - y * z) + np.abs(model.coef_).sum() / (C * len(y))


path = TorchLogisticRegression(l1_ratio=1.0, warm_start=True)
coefs, epochs, gap_ours, gap_saga = [], [], [], []
for C in Cs:
    path.set_params(C=C).fit(X, y)
    tight = TorchLogisticRegression(C=C, l1_ratio=1.0, tol=1e-10, max_iter=10_000).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # saga stops at max_iter=100
        saga = LogisticRegression(C=C, l1_ratio=1.0, solver="saga").fit(X, y)
    best = min(J(tight, C), J(path, C), J(saga, C))
    coefs.append(path.coef_[0].copy())
    epochs.append(path.n_iter_)
    gap_ours.append(J(path, C) - best)
    gap_saga.append(J(saga, C) - best)
coefs = np.array(coefs)
print("nonzero coefficients along the path:", (coefs != 0).sum(1).tolist())
print("epochs per C (warm-started):", epochs)
print(f"largest gap above the optimum: ours {max(gap_ours):.1e}, saga {max(gap_saga):.1e}")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
left.plot(Cs, coefs, lw=1)
left.set_xscale("log")
left.set_xlabel("C")
left.set_ylabel("coefficient (standardised features)")
left.set_title("L1 path: exact zeros at small C")
right.plot(Cs, np.maximum(gap_ours, 1e-16), "o-", label="TorchLogisticRegression (defaults)")
right.plot(Cs, np.maximum(gap_saga, 1e-16), "s-", label="sklearn saga (defaults)")
right.set_xscale("log")
right.set_yscale("log")
right.set_xlabel("C")
right.set_ylabel("objective above the optimum")
right.set_title("How far each default fit stops")
right.legend()
plt.show()
