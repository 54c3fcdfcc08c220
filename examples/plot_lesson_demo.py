"""
The lesson, replayed
====================

The lesson this package grew from trains ``nn.Linear(2, 1)`` + ``nn.Sigmoid`` with
``BCELoss`` and ``SGD(lr=0.01, momentum=0.9)`` on two Gaussian classes, plotting the
boundary every 20 iterations. Here the same model is trained as a scikit-learn
estimator, once with the lesson's settings and once with the defaults.
"""

# %%
# The lesson's data: 100 points of each class, drawn exactly as the lesson draws them.
import matplotlib.pyplot as plt
import numpy as np

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.datasets import make_lesson_data
from sktorch_lr.plotting import plot_decision_boundary, plot_loss_curve, plot_training_snapshots

X, y = make_lesson_data()

# %%
# The lesson's settings: lr=0.01, momentum=0.9, no penalty (``C=np.inf``), full batch,
# and a fixed number of epochs as the lesson runs them (``tol=0``: no stopping rule).
# ``track_gradients=True`` keeps the parameters of every epoch for the snapshots.
lesson = TorchLogisticRegression(
    lr=0.01, momentum=0.9, C=np.inf, batch_size=None, max_iter=400, tol=0, track_gradients=True
).fit(X, y)
print(f"lesson settings: {lesson.n_iter_} epochs, accuracy {lesson.score(X, y):.3f}")

fig = plot_training_snapshots(lesson, X, y, every=20, max_frames=8)

# %%
# ``lr="auto"`` measures the curvature and chooses the step itself. On the same
# objective (``C=np.inf``) it needs a few epochs; the lesson's two classes are
# separable, so without a penalty the objective only tends to zero as the weights grow.
auto = TorchLogisticRegression(C=np.inf).fit(X, y)
default = TorchLogisticRegression().fit(X, y)  # C=1, the default penalty
print(f"lr='auto', C=inf: {auto.n_iter_} epochs; defaults (C=1): {default.n_iter_} epochs")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
plot_decision_boundary(default, X, y, ax=axes[0], title="Defaults (C=1): the fitted boundary")
plot_loss_curve(lesson, ax=axes[1], label=f"lesson settings, {lesson.n_iter_} epochs")
plot_loss_curve(auto, ax=axes[1], label=f"lr='auto', {auto.n_iter_} epochs")
axes[1].set_title("The same objective (C=inf), per epoch")
plt.show()
