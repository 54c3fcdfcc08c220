"""
Standard errors and influence
=============================

A fitted :class:`~sktorch_lr.TorchLogisticRegression` answers what statisticians ask:
standard errors, confidence intervals and p-values (here for a penalised fit, with the
sandwich covariance of the ridge estimator), and which training points drive a prediction.
"""

# %%
# A penalised fit on standardised breast cancer, and its table.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.inspection import GradientInspector

data = load_breast_cancer(as_frame=True)
X = pd.DataFrame(StandardScaler().fit_transform(data.data), columns=data.data.columns)
y = data.target.to_numpy()
train, test = np.arange(400), np.arange(400, len(y))
model = TorchLogisticRegression(C=0.1).fit(X.iloc[train], y[train])
inspector = GradientInspector(model, X.iloc[train], y[train])
table = inspector.summary()  # kind="auto": the sandwich, since C is finite
print(table.head(8).round(3))

# %%
# The sandwich against the naive inverse penalised Hessian ("laplace"): the Bayesian
# posterior spread is wider than the spread of the shrunk estimate itself.
laplace = inspector.summary("laplace")
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.scatter(table["std_err"], laplace["std_err"], s=12)
top = float(max(table["std_err"].max(), laplace["std_err"].max()))
ax.plot([0, top], [0, top], color="k", lw=1, label="equal")
ax.set_xlabel("standard error, sandwich (frequentist, ridge)")
ax.set_ylabel("standard error, laplace (posterior)")
ax.legend(loc="upper left")
ax.set_title("Two covariances of a penalised fit")

# %%
# Which training points drive the predictions on the test rows? Koh & Liang's influence
# function, checked against exact leave-one-out refits of a few points.
influence = inspector.influence_on(X.iloc[test], y[test])  # (n_train, n_test)
total = np.abs(influence).sum(axis=1)
top_points = np.argsort(total)[-5:][::-1]
print("most influential training rows:", top_points)

picked = top_points[:3]
base = inspector.params()


def test_losses(params):
    z = X.iloc[test].to_numpy() @ params[:-1] + params[-1]
    return np.logaddexp(0, z) - y[test] * z


exact = np.array([test_losses(p) - test_losses(base) for p in inspector.loo_refit(picked)])
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.scatter(exact.ravel(), influence[picked].ravel(), s=10)
lim = np.abs(exact).max() * 1.1
ax.plot([-lim, lim], [-lim, lim], color="k", lw=1)
ax.set_xlabel("exact change of test loss (leave-one-out refit)")
ax.set_ylabel("influence function (one Hessian solve)")
ax.set_title("Leaving out the three most influential training rows")
plt.show()
