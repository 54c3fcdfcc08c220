"""
Class imbalance with class_weight
=================================

On a 95 / 5 split the unweighted fit favours the majority class. ``class_weight`` (a
dict or ``"balanced"``) multiplies each sample's weight, exactly as in
``LogisticRegression``.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import make_classification
from sklearn.metrics import balanced_accuracy_score, recall_score

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.plotting import plot_decision_boundary

X, y = make_classification(
    n_samples=1000,
    n_features=2,
    n_redundant=0,
    n_clusters_per_class=1,
    weights=[0.95, 0.05],
    class_sep=0.8,
    random_state=3,
)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained", sharey=True)
for ax, class_weight in zip(axes, (None, "balanced"), strict=True):
    clf = TorchLogisticRegression(class_weight=class_weight).fit(X, y)
    pred = clf.predict(X)
    title = (
        f"class_weight={class_weight!r}: minority recall {recall_score(y, pred):.2f}, "
        f"balanced acc. {balanced_accuracy_score(y, pred):.2f}"
    )
    print(title)
    plot_decision_boundary(clf, X, y, ax=ax, title=title)
plt.show()
