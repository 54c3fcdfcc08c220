"""
Scoring logs with sklearn.callback, and export to scikit-learn
==============================================================

With scikit-learn 1.9's callback API, ``ScoringMonitor`` scores the model after every
epoch; ``to_sklearn()`` hands the fitted model to tools that know
``LogisticRegression``.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression

X, y = load_breast_cancer(return_X_y=True)
X = StandardScaler().fit_transform(X)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

try:
    from sklearn.callback import ScoringMonitor
except ImportError:  # scikit-learn < 1.9
    ScoringMonitor = None

fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
if ScoringMonitor is not None:
    monitor = ScoringMonitor(scoring="neg_log_loss")
    clf = TorchLogisticRegression().set_callbacks(monitor).fit(X_train, y_train)
    epochs = [row for row in monitor.get_logs().data if row["task_name"] == "epoch"]
    ax.plot(
        [r["task_id"] + 1 for r in epochs],
        [-r["neg_log_loss"] for r in epochs],
        "o-",
        ms=3,
        label="training log-loss, logged by ScoringMonitor",
    )
else:
    clf = TorchLogisticRegression().fit(X_train, y_train)
ax.plot(np.arange(1, clf.n_iter_ + 1), clf.loss_curve_, label="objective (loss_curve_)")
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("value")
ax.set_title("Per-epoch logs through sklearn.callback")
ax.legend()

# %%
# ``to_sklearn()``: the same predictions from scikit-learn's own estimator.
sk = clf.to_sklearn()
print(
    type(sk).__name__,
    "predictions identical:",
    bool((sk.predict(X_test) == clf.predict(X_test)).all()),
    " max |proba difference|:",
    np.abs(sk.predict_proba(X_test) - clf.predict_proba(X_test)).max(),
)
plt.show()
