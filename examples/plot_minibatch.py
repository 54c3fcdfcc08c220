"""
Mini-batches on a larger data set
=================================

``batch_size`` sets the mini-batch size (reshuffled every epoch from
``random_state``). With ``lr="auto"`` the batch doubles whenever the objective stalls
in the gradient noise, so training still ends at the optimum; ``partial_fit`` streams
chunks through the same model.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression

X, y = make_classification(n_samples=100_000, n_features=20, n_informative=10, random_state=0)
X = StandardScaler().fit_transform(X).astype(np.float32)
optimum = LogisticRegression(tol=1e-8, max_iter=1000).fit(X, y)

fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
for batch_size in (None, 4096, 512):
    start = time.perf_counter()
    est = TorchLogisticRegression(batch_size=batch_size, random_state=0).fit(X, y)
    seconds = time.perf_counter() - start
    label = "full batch" if batch_size is None else f"batch_size={batch_size}"
    print(f"{label}: {est.n_iter_} epochs, {seconds:.2f} s, accuracy {est.score(X, y):.4f}")
    ax.semilogy(np.arange(1, est.n_iter_ + 1), est.loss_curve_, label=f"{label} ({seconds:.1f} s)")
ax.set_xlabel("epoch")
ax.set_ylabel("objective J")
ax.set_title("100,000 x 20 float32: objective per epoch")
ax.legend()

# %%
# Streaming: ten chunks, one epoch each per ``partial_fit`` call.
stream = TorchLogisticRegression(random_state=0)
for start in range(0, len(X), 10_000):
    stream.partial_fit(X[start : start + 10_000], y[start : start + 10_000], classes=[0, 1])
print("after one streamed pass: accuracy", round(stream.score(X, y), 4))
plt.show()
