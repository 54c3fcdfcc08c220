"""
Choosing C: every fold and every C in one batch
===============================================

``TorchLogisticRegressionCV`` trains the 5 folds x 10 values of ``C`` as one
batched torch program, then refits with the ``C`` of best mean held-out score,
as scikit-learn's ``LogisticRegressionCV`` does. Here the held-out log loss of
each fold along the grid, on standardised breast cancer.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegressionCV

X, y = load_breast_cancer(return_X_y=True)
pipe = make_pipeline(StandardScaler(), TorchLogisticRegressionCV(scoring="neg_log_loss"))
pipe.fit(X, y)
cv = pipe[-1]
print(f"chosen C: {cv.C_:.3g}; epochs per problem: {cv.n_iter_.min()} to {cv.n_iter_.max()}")

# %%
# ``scores_`` holds one held-out score per fold, l1_ratio and C.
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for fold, scores in enumerate(-cv.scores_[:, 0]):
    ax.semilogx(cv.Cs_, scores, "o-", alpha=0.6, label=f"fold {fold}")
ax.semilogx(cv.Cs_, -cv.scores_[:, 0].mean(0), "k-", lw=2.5, label="mean over folds")
ax.axvline(cv.C_, color="k", ls="--", label=f"chosen C = {cv.C_:.3g}")
ax.set_xlabel("C (inverse regularisation strength)")
ax.set_ylabel("held-out log loss")
ax.set_ylim(0, 0.7)
ax.set_title("TorchLogisticRegressionCV: validation score against C, per fold")
ax.legend(fontsize=8)
plt.show()

# %%
# The coefficients' path: every fold's solution at every C, from ``coefs_paths_``
# (the intercept is the last column). Strong penalties shrink them to zero.
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
paths = cv.coefs_paths_[0, 0, :, 0, :-1]  # fold 0, binary model
ax.semilogx(cv.Cs_, paths, alpha=0.7)
ax.axvline(cv.C_, color="k", ls="--")
ax.set_xlabel("C")
ax.set_ylabel("coefficient (standardised feature)")
ax.set_title("Fold 0: the coefficients along the grid")
plt.show()
