"""
Out-of-core training with Dask
==============================

``dask_ml.wrappers.Incremental`` streams a Dask array through ``partial_fit`` one block at
a time, so the data never has to fit in memory at once. Each ``partial_fit`` call is one
epoch on its block; the step size, momentum and random generator carry over.
(Here the cluster is an in-process ``LocalCluster``; the same code runs on a
multi-machine cluster, see the user guide.)
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from dask_ml.datasets import make_classification
from dask_ml.wrappers import Incremental
from distributed import Client, LocalCluster
from sklearn.linear_model import LogisticRegression

from sktorch_lr import TorchLogisticRegression

with (
    LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
    Client(cluster),
):
    # Generated block by block by Dask: ten blocks of 20,000 rows, never one array.
    Xd, yd = make_classification(
        n_samples=200_000, n_features=20, n_informative=8, chunks=20_000, random_state=0
    )
    Xd, yd = Xd.astype(np.float32).persist(), yd.persist()  # kept on the workers
    inc = Incremental(TorchLogisticRegression(random_state=0), scoring="accuracy")
    scores = []
    for _ in range(5):
        inc.partial_fit(Xd, yd, classes=[0, 1])
        scores.append(inc.score(Xd, yd))
    X, y = Xd.compute(), yd.compute()  # small enough here to compare with lbfgs in memory

reference = LogisticRegression().fit(X, y).score(X, y)
print("accuracy after each pass:", np.round(scores, 4), " in-memory lbfgs:", round(reference, 4))

fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
ax.plot(range(1, 6), scores, "o-", label="Incremental(TorchLogisticRegression)")
ax.axhline(reference, color="k", ls="--", label="LogisticRegression on all data in memory")
ax.set_ylim(reference - 0.05, reference + 0.05)  # a scale on which 0.01 shows
ax.set_xticks(range(1, 6))
ax.set_xlabel("pass over the ten blocks")
ax.set_ylabel("training accuracy")
ax.set_title("Streaming 200,000 x 20 through partial_fit, block by block")
ax.legend()
plt.show()
