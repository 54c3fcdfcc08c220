"""
Pipeline and GridSearchCV on breast cancer
==========================================

The estimator is a plain scikit-learn classifier: it goes into a ``Pipeline`` after a
``StandardScaler`` and ``GridSearchCV`` tunes ``C``.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression

X, y = load_breast_cancer(return_X_y=True)
pipe = make_pipeline(StandardScaler(), TorchLogisticRegression())
Cs = np.logspace(-3, 2, 11)
search = GridSearchCV(
    pipe, {"torchlogisticregression__C": Cs}, cv=StratifiedKFold(5, shuffle=True, random_state=0)
).fit(X, y)
print("best C:", search.best_params_, "CV accuracy:", round(search.best_score_, 4))

# %%
mean = search.cv_results_["mean_test_score"]
std = search.cv_results_["std_test_score"]
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
ax.semilogx(Cs, mean, "o-", label="mean CV accuracy (5 folds)")
ax.fill_between(Cs, mean - std, mean + std, alpha=0.25, label="+/- one std")
ax.axvline(search.best_params_["torchlogisticregression__C"], color="k", ls="--", label="best C")
ax.set_xlabel("C (inverse regularisation strength)")
ax.set_ylabel("accuracy")
ax.set_title("GridSearchCV over C: StandardScaler + TorchLogisticRegression")
ax.legend()
plt.show()
