"""
Side by side with scikit-learn's LogisticRegression
===================================================

Same objective, same ``C``: the coefficients agree. The difference is the solver
(momentum SGD on a torch module against L-BFGS) and what you can do with the model.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.datasets import make_lesson_data
from sktorch_lr.plotting import plot_decision_boundary

X, y = load_breast_cancer(return_X_y=True)
X = StandardScaler().fit_transform(X)
models = {
    "sklearn LogisticRegression (lbfgs)": LogisticRegression(),
    "TorchLogisticRegression (defaults)": TorchLogisticRegression(),
    "TorchLogisticRegression (tol=1e-7)": TorchLogisticRegression(tol=1e-7, max_iter=5000),
}
times = {}
for name, model in models.items():
    model.fit(X, y)  # warm-up: the first fit in a process pays one-time set-up
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        model.fit(X, y)
        runs.append(time.perf_counter() - start)
    times[name] = float(np.median(runs))
    print(f"{name}: {times[name] * 1e3:.1f} ms (median of 5), accuracy {model.score(X, y):.4f}")

# %%
sk, ours, tight = models.values()
fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), layout="constrained")
axes[0].scatter(sk.coef_.ravel(), ours.coef_.ravel(), s=14, label="defaults")
axes[0].scatter(sk.coef_.ravel(), tight.coef_.ravel(), s=8, marker="x", label="tol=1e-7")
lim = np.abs(sk.coef_).max() * 1.1
axes[0].plot([-lim, lim], [-lim, lim], "k--", lw=1, label="y = x")
axes[0].set_xlabel("sklearn coef_")
axes[0].set_ylabel("TorchLogisticRegression coef_")
axes[0].set_title("Breast cancer coefficients (C=1)")
axes[0].legend()
axes[1].barh(list(times), [t * 1e3 for t in times.values()], color=["gray", "C0", "C1"])
axes[1].set_xlabel("fit time (ms)")
axes[1].set_title("Fit time on breast cancer (569 x 30), median of 5")

# %%
# The lesson's 2-D data: the two boundaries lie on top of each other.
X2, y2 = make_lesson_data()
fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained", sharey=True)
plot_decision_boundary(
    TorchLogisticRegression().fit(X2, y2), X2, y2, ax=axes[0], title="TorchLogisticRegression"
)
plot_decision_boundary(
    LogisticRegression().fit(X2, y2), X2, y2, ax=axes[1], title="sklearn LogisticRegression"
)
plt.show()
