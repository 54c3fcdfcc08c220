"""
Multiclass: softmax on iris and digits
======================================

With more than two classes the model is ``nn.Linear(n_features, K)`` followed by a
softmax, the multinomial logistic regression scikit-learn fits.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.plotting import plot_decision_boundary

iris = load_iris()
X = iris.data[:, :2]
clf = TorchLogisticRegression().fit(X, iris.target)
print("coef_ shape:", clf.coef_.shape, " training accuracy:", round(clf.score(X, iris.target), 3))
plot_decision_boundary(
    clf,
    X,
    iris.target,
    feature_names=iris.feature_names[:2],
    title="Iris, two features: softmax decision regions",
)

# %%
# Digits: 64 pixel features, 10 classes. The coefficients of each class, as images,
# next to sklearn's.
X, y = load_digits(return_X_y=True)
X = StandardScaler().fit_transform(X)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
ours = TorchLogisticRegression().fit(X_train, y_train)
sk = LogisticRegression(max_iter=1000).fit(X_train, y_train)
print(
    f"test accuracy: ours {ours.score(X_test, y_test):.3f}, sklearn {sk.score(X_test, y_test):.3f}"
)
fig, axes = plt.subplots(2, 10, figsize=(12, 3), layout="constrained")
vmax = np.abs(sk.coef_).max()
for k in range(10):
    for row, model in enumerate((ours, sk)):
        axes[row, k].imshow(model.coef_[k].reshape(8, 8), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        axes[row, k].set_xticks([])
        axes[row, k].set_yticks([])
    axes[0, k].set_title(f"digit {k}")
axes[0, 0].set_ylabel("ours")
axes[1, 0].set_ylabel("sklearn")
fig.suptitle("Digits: coefficients per class (top: TorchLogisticRegression, bottom: sklearn)")
plt.show()
