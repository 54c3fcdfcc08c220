"""Exact fits on Dask collections: each worker differentiates its partitions, the client steps.

``TorchLogisticRegression().fit(dask_X, dask_y)`` runs the same solver as an
in-memory fit (:func:`sktorch_lr._solver.solve`, ``lr="auto"``) through
:class:`DaskProblem`, whose ``evaluate`` is a map-reduce: every epoch, each
partition's weighted loss sum and its gradient are computed by autograd on the
worker that holds the partition, the sums are reduced in a tree, and the
momentum step, the stopping rule and the curvature (measured on at most
16,384 evenly strided rows, gathered once) run on the client. Partitions are
persisted once on the current ``distributed.Client`` (or kept as they are on
dask's local scheduler), so the source is read once, never every epoch. ``X``
is never gathered whole: the client receives one number and one gradient per
partition and epoch. This is what Spark's treeAggregate + L-BFGS, cuML's
all-reduce and dask-glm do; the step here is the preconditioned momentum SGD.
"""

import sys

import numpy as np
import torch

from ._curvature import CURVATURE_MAX_ROWS
from ._data import TrainingData
from ._objective import data_term, linear_logits, penalty_term
from ._solver import Problem


def is_dask_collection(X):
    """Whether ``X`` is a dask collection, without importing dask when it is not loaded.

    A dask collection can only exist once dask has been imported, so a process that
    never imported it pays nothing here (importing dask costs ~0.3 s).
    """
    if "dask" not in sys.modules:
        return False
    from dask.base import is_dask_collection as check

    return check(X)


def as_dask_array(X, name):
    """A dask array from a dask array, DataFrame or Series (row chunk sizes known)."""
    import dask.array as da

    if isinstance(X, da.Array):
        if any(np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        return X
    if hasattr(X, "to_dask_array"):
        return X.to_dask_array(lengths=True)
    raise TypeError(f"{name} must be a dask array or a dask DataFrame/Series, got {type(X)}.")


def _partition_sums(X, y, sw, classes, coef, intercept, class_weight, float64=False):
    """On a worker: ``sum_i s_i loss_i`` and its gradient for one partition, by autograd
    (in float64 arithmetic if ``float64``, whatever the chunk's dtype)."""
    X = torch.from_numpy(np.ascontiguousarray(X))
    if float64:
        X = X.to(torch.float64)
    dtype = X.dtype
    binary = len(classes) == 2
    y = np.asarray(y)
    y_enc = (y == classes[1]) if binary else np.searchsorted(classes, y)
    yt = torch.from_numpy(np.asarray(y_enc, dtype=np.float64 if binary else np.int64))
    yt = yt.to(dtype) if binary else yt
    weights = None if sw is None else np.asarray(sw, dtype=np.float64)
    if class_weight is not None:
        per = class_weight[np.asarray(y_enc, dtype=np.int64)]
        weights = per if weights is None else weights * per
    swt = None if weights is None else torch.from_numpy(weights).to(dtype)
    W = torch.from_numpy(coef).to(dtype).requires_grad_(True)
    b = None if intercept is None else torch.from_numpy(intercept).to(dtype).requires_grad_(True)
    value = data_term(linear_logits(X, W, b), yt, swt, 1.0)
    value.backward()
    return (
        float(value.detach()),
        W.grad.double().numpy(),
        None if b is None else b.grad.double().numpy(),
    )


def _add(a, b):
    return (
        a[0] + b[0],
        a[1] + b[1],
        None if a[2] is None else a[2] + b[2],
    )


def _tree_sum(parts):
    """Sum delayed partition results pairwise (a tree, as dask's reductions do)."""
    from dask import delayed

    while len(parts) > 1:
        parts = [
            delayed(_add)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


class DaskData:
    """The training set as dask arrays, persisted once, with the numbers the solver reads.

    ``full()`` and ``batch()`` are not available: the data never come to the client.
    """

    def __init__(self, X, y, sample_weight, classes, class_weight, *, dtype):
        import dask

        X = as_dask_array(X, "X")
        y = as_dask_array(y, "y").rechunk((X.chunks[0],))
        if sample_weight is not None:
            sample_weight = as_dask_array(sample_weight, "sample_weight").rechunk((X.chunks[0],))
        if X.chunks[1] != (X.shape[1],):
            X = X.rechunk({1: -1})
        X, y, sample_weight = _persist(X, y, sample_weight)
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.classes = classes
        self.class_weight = class_weight  # per encoded class, or None
        self.dtype = dtype
        self.device = torch.device("cpu")
        self.n_samples, self.n_features = X.shape
        self.binary = len(classes) == 2
        weights = self._weights_dask()
        if weights is None:
            total = float(self.n_samples)
            mean = X.mean(axis=0)
        else:
            total = weights.sum()
            mean = (X * weights[:, None]).sum(axis=0) / total
        # In the same pass, what validation reads of the values: the largest |x|
        # (NaN if any is) and the smallest sample weight.
        largest = abs(X).max() if X.size else 0.0
        lowest = sample_weight.min() if sample_weight is not None and X.size else 0.0
        # And each column's extremes, for constant_columns.
        low, high = X.min(axis=0), X.max(axis=0)
        total, mean, largest, lowest, low, high = dask.compute(
            total, mean, largest, lowest, low, high
        )
        self.largest = float(largest)
        self.lowest_weight = float(lowest)
        self.weight_sum = float(total)
        constant = torch.as_tensor(np.asarray(low == high))
        low = torch.as_tensor(np.asarray(low, dtype=np.float64)).to(dtype)
        self._constant = (constant, low) if bool(constant.any()) else (None, None)
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float64)).to(dtype)
        if self._constant[0] is not None:
            mean[constant] = low[constant]  # exactly, as TrainingData.weighted_mean
        self._mean = mean
        self._sample = None

    def _weights_dask(self):
        w = self.sample_weight
        if self.class_weight is not None:
            import dask.array as da

            enc = (
                (self.y == self.classes[1]).astype(np.int64)
                if self.binary
                else da.map_blocks(np.searchsorted, self.classes, self.y, dtype=np.int64)
            )
            per = da.map_blocks(lambda e: self.class_weight[e], enc, dtype=np.float64)
            w = per if w is None else w * per
        return w

    def weighted_mean(self):
        return self._mean

    def constant_columns(self):
        """As :meth:`sktorch_lr._data.TrainingData.constant_columns`, from the mean's pass."""
        return self._constant

    def curvature_sample(self):
        """At most 16,384 evenly strided rows, gathered to the client once, as TrainingData."""
        if self._sample is None:
            n = self.n_samples
            rows = np.unique(np.linspace(0, n - 1, min(n, CURVATURE_MAX_ROWS)).round().astype(int))
            import dask

            X, y, sw = dask.compute(
                self.X[rows],
                self.y[rows],
                None if self.sample_weight is None else self.sample_weight[rows],
            )
            y_enc = (
                (y == self.classes[1]).astype(np.int8)
                if self.binary
                else np.searchsorted(self.classes, y)
            )
            w = None if sw is None else np.asarray(sw, dtype=np.float64)
            if self.class_weight is not None:
                per = self.class_weight[np.asarray(y_enc, dtype=np.int64)]
                w = per if w is None else w * per
            self._sample = TrainingData(
                np.asarray(X), y_enc, w, binary=self.binary, device=self.device, dtype=self.dtype
            )
        return self._sample

    def partition_sums(self, coef, intercept, *, float64=False):
        """``(sum_i s_i loss_i, gradient wrt coef, gradient wrt intercept)`` over all
        partitions, each summed in the chunks' dtype or, if ``float64``, in float64."""
        from dask import delayed

        X_parts = self.X.to_delayed().ravel()
        y_parts = self.y.to_delayed().ravel()
        sw_parts = (
            [None] * len(X_parts)
            if self.sample_weight is None
            else self.sample_weight.to_delayed().ravel()
        )
        coef = coef.detach().cpu().double().numpy()
        intercept = None if intercept is None else intercept.detach().cpu().double().numpy()
        parts = [
            delayed(_partition_sums)(
                Xp, yp, sp, self.classes, coef, intercept, self.class_weight, float64
            )
            for Xp, yp, sp in zip(X_parts, y_parts, sw_parts, strict=True)
        ]
        return _tree_sum(parts).compute()


def _persist(*arrays):
    """Persist on the current distributed client, if any (read the source once)."""
    try:
        from distributed import default_client

        default_client()
    except (ImportError, ValueError):
        return arrays
    import dask

    present = [a for a in arrays if a is not None]
    persisted = iter(dask.persist(*present))
    return tuple(None if a is None else next(persisted) for a in arrays)


class DaskProblem(Problem):
    """:class:`~sktorch_lr._solver.Problem` whose objective and gradient are a map-reduce."""

    rows_at_hand = False  # the rows stay on the workers

    def __init__(self, data, penalty, *, fit_intercept):
        super().__init__(data, penalty, fit_intercept=fit_intercept, centred=True)

    # refine_precision is the in-memory one: after it, the workers compute their
    # partitions in float64 and the client takes ``b = c - W @ mean`` in float64,
    # so the gradients are rounded to the training dtype once, at the end.

    def evaluate(self, params, batch=None):
        if batch is not None:
            raise ValueError("Mini-batches are not drawn from dask input.")
        dtype = torch.float64 if self.float64_sums else params[0].dtype
        coef = params[0].to(dtype)  # differentiable: the gradients flow back rounded
        raw = params[1].to(dtype) if self.fit_intercept else None
        intercept = self.model_intercept(coef, raw)
        value, g_coef, g_int = self.data.partition_sums(coef, intercept, float64=self.float64_sums)
        S = self.data.weight_sum
        # Chain the reduced gradients through the centring (and add the penalty) by
        # autograd on the client: the same parametrisation as an in-memory fit.
        outputs = [coef]
        grads = [torch.as_tensor(g_coef / S, dtype=dtype)]
        if intercept is not None:
            outputs.append(intercept)
            grads.append(torch.as_tensor(g_int / S, dtype=dtype))
        penalty_value = 0.0
        if self.penalty.l2:
            pen = (0.5 * self.penalty.l2) * coef.pow(2).sum()
            outputs.append(pen)
            grads.append(torch.ones((), dtype=dtype))
            penalty_value = float(pen.detach())
        # The vector-Jacobian product as one scalar's backward (grad tensors would
        # import torch's symbolic-shape machinery, see hessian_vector_product).
        sum((out * grad).sum() for out, grad in zip(outputs, grads, strict=True)).backward()
        self.project_([p.grad for p in params])
        self.fix_constant_columns_(params)
        total = value / S + penalty_value
        if self.penalty.l1:
            total += float(self.penalty.l1 * coef.detach().abs().sum())
        return torch.tensor(total, dtype=torch.float64)

    def model_objective(self, coef, intercept):
        """``J`` of the model's own ``(W, b)``, every partition summed in float64 (the
        in-memory :meth:`~sktorch_lr._solver.Problem.model_objective`)."""
        coef = coef.to(torch.float64)
        intercept = None if intercept is None else intercept.to(torch.float64)
        value = self.data.partition_sums(coef, intercept, float64=True)[0]
        pen = penalty_term(coef, self.penalty)
        return value / self.data.weight_sum + (0.0 if pen is None else float(pen))

    def curvature_data(self):
        """At most 16,384 evenly strided rows, gathered to the client once."""
        return self.data.curvature_sample()
