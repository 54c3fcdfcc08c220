"""Turning validated numpy / scipy.sparse / torch input into tensors on a device.

No needless copies: a C- or F-ordered numpy array becomes a tensor that shares
its memory (``torch.from_numpy``) and moves to the device once; a torch tensor
already of the right dtype on the right device is used as it is. Sparse input
stays sparse: the full matrix becomes one sparse COO tensor, mini-batches are
sliced from the CSR matrix row by row.
"""

import numpy as np
import scipy.sparse as sp
import torch

# Rows compared at a time by TrainingData.constant_columns.
CONSTANT_CHECK_ROWS = 4096

_FLOAT_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def is_tensor(X):
    return isinstance(X, torch.Tensor)


def torch_dtype(np_dtype):
    """The torch dtype training uses for a numpy dtype (float32 stays float32)."""
    return _FLOAT_DTYPES.get(np.dtype(np_dtype), torch.float64)


def resolve_device(device):
    """A :class:`torch.device` for ``"cpu"``, ``"cuda[:N]"``, ``"mps"`` or ``"auto"``.

    Raises
    ------
    ValueError
        If the name is unknown or the device is not available here.
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'."
        ) from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are available."
            )
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={device!r} was requested but MPS is not available here.")
        return dev
    raise ValueError(
        f"device={device!r} is not supported; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'."
    )


def csr_to_coo_tensor(X, device, dtype):
    """A coalesced sparse COO tensor holding a scipy CSR matrix (no densification)."""
    X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    coo = X.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64, copy=False))
    values = torch.from_numpy(np.asarray(coo.data))
    return torch.sparse_coo_tensor(
        indices,
        values.to(dtype),
        size=X.shape,
        check_invariants=False,
        is_coalesced=True,
    ).to(device)


def torch_can_share(X):
    """Whether ``torch.from_numpy`` can wrap the numpy array ``X``: it warns on
    read-only arrays (e.g. memory maps opened read-only) and refuses negative
    strides (``X[::-1]``)."""
    return X.flags.writeable and all(stride >= 0 for stride in X.strides)


def training_layout(X):
    """Dense ``X`` (numpy or tensor) in memory that training reads at full speed.

    C- or F-ordered memory stays as it is (shared, no copy); anything else --
    a strided view such as ``X[:, :50]`` or ``X[::2]``, negative strides,
    read-only numpy memory (which torch cannot share) -- is copied once, as
    scikit-learn's ``LogisticRegression`` copies every input not in C order.
    A fit reads ``X`` dozens of times: on 200,000 x 50 float64 a column slice
    of a 200,000 x 100 array took 280 ms to fit and its copy 150 ms. Sparse
    input is returned as it is.
    """
    if sp.issparse(X):
        return X
    if is_tensor(X):
        return X if X.is_contiguous() or X.T.is_contiguous() else X.contiguous()
    X = np.asarray(X)
    if torch_can_share(X) and (X.flags.c_contiguous or X.flags.f_contiguous):
        return X
    return np.array(X, order="K")  # contiguous, in the order closest to X's


def dense_to_tensor(X, device, dtype):
    """A numpy array as a tensor on ``device``, sharing memory where it can
    (:func:`torch_can_share`; the others are copied once)."""
    if not torch_can_share(X):
        X = np.array(X)
    return torch.from_numpy(X).to(device=device, dtype=dtype)


def as_tensor(X, device, dtype):
    """Validated ``X`` (numpy, scipy sparse or tensor) as a tensor on ``device``."""
    if is_tensor(X):
        return X.detach().to(device=device, dtype=dtype)
    if sp.issparse(X):
        return csr_to_coo_tensor(X, device, dtype)
    return dense_to_tensor(np.asarray(X), device, dtype)


def vector_to_tensor(v, device, dtype):
    if v is None:
        return None
    if is_tensor(v):
        return v.detach().to(device=device, dtype=dtype)
    v = np.asarray(v)
    if not v.flags.writeable or not v.flags.c_contiguous:
        v = np.array(v, order="C")  # torch warns on read-only memory
    return torch.from_numpy(v).to(device=device, dtype=dtype)


class TrainingData:
    """The training set as the solver sees it: full batch, mini-batches, a curvature sample.

    Parameters
    ----------
    X : ndarray, scipy CSR matrix or Tensor of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Encoded targets: 0/1 for the binary model, class indices otherwise.
    sample_weight : ndarray of shape (n_samples,) or None
        ``s_i`` with class weights folded in; ``None`` means all ones.
    binary : bool
    device : torch.device
    dtype : torch.dtype
    """

    def __init__(self, X, y, sample_weight, *, binary, device, dtype):
        self.device = device
        self.dtype = dtype
        self.n_samples, self.n_features = X.shape
        self._csr = X.tocsr() if sp.issparse(X) else None
        self.X = as_tensor(X, device, dtype)
        self.y = vector_to_tensor(y, device, dtype if binary else torch.int64)
        self.sample_weight = vector_to_tensor(sample_weight, device, dtype)
        if sample_weight is None:
            self.weight_sum = float(self.n_samples)
        else:
            self.weight_sum = float(np.sum(sample_weight, dtype=np.float64))
        self._constant = None  # constant_columns, once computed

    def full(self):
        return self.X, self.y, self.sample_weight

    def batch(self, idx):
        """Rows ``idx`` (a CPU int64 tensor) as ``(X, y, sample_weight)`` on the device."""
        if self._csr is not None:
            Xb = csr_to_coo_tensor(self._csr[idx.numpy()], self.device, self.dtype)
        else:
            Xb = self.X.index_select(0, idx.to(self.device))
        idx_d = idx.to(self.device)
        yb = self.y.index_select(0, idx_d)
        swb = None if self.sample_weight is None else self.sample_weight.index_select(0, idx_d)
        return Xb, yb, swb

    def curvature_rows(self, max_rows):
        """The rows the curvature is measured on: all, or ``max_rows`` evenly strided.

        Deterministic (no random numbers drawn), so that measuring curvature
        never changes what ``random_state`` produces. ``None`` means all rows.
        """
        if self.n_samples <= max_rows:
            return None
        return torch.linspace(0, self.n_samples - 1, max_rows).round().long()

    def float64_chunks(self, rows, chunk_rows):
        """``(X, y, sample_weight)`` of ``rows`` (None: all), dense float64, in chunks."""
        n = self.n_samples if rows is None else len(rows)
        if rows is None and n <= chunk_rows and self.X.layout != torch.sparse_coo:
            yield to_float64(*self.full())
            return
        for start in range(0, n, chunk_rows):
            if rows is None:
                idx = torch.arange(start, min(start + chunk_rows, n))
            else:
                idx = rows[start : start + chunk_rows]
            X, y, sw = self.batch(idx)
            if X.layout == torch.sparse_coo:
                X = X.to_dense()
            yield to_float64(X, y, sw)

    def float64_sample(self, rows):
        """Rows ``rows`` (None: all) in float64, in one piece (sparse stays sparse)."""
        return to_float64(*(self.full() if rows is None else self.batch(rows)))

    def weighted_mean(self):
        """``sum_i s_i x_i / S``: the column means the solver centres the features on.

        Any shift is exact (the intercept absorbs it), so the mean is computed
        in the training dtype, without a copy of ``X``; sparse ``X`` stays
        sparse (one sparse matrix-vector product). A constant column's mean is
        its value exactly (:meth:`constant_columns`), not the rounded sum, so
        that centring makes it exactly zero.
        """
        if self.sample_weight is None:
            w = torch.full((self.n_samples,), 1.0 / self.n_samples, dtype=self.dtype)
            w = w.to(self.device)
        else:
            w = self.sample_weight / self.weight_sum
        if self.X.layout == torch.sparse_coo:
            mean = torch.sparse.mm(self.X.t(), w[:, None])[:, 0]
        else:
            mean = self.X.T @ w
        mean = mean.to(self.dtype)
        constant, values = self.constant_columns()
        if constant is not None:
            mean[constant] = values[constant]
        return mean

    def constant_columns(self):
        """``(mask, values)``: :func:`constant_columns` of ``X``, computed once."""
        if self._constant is None:
            self._constant = constant_columns(self.X)
        return self._constant


def constant_columns(X):
    """``(mask, values)`` of the columns of ``X`` (a dense or sparse COO tensor) whose
    every entry is the same number, or ``(None, None)`` where none is.

    With an intercept such a column is the intercept's direction over again:
    centred, it is zero and its coefficient changes nothing but the penalty.
    In floating point its centred curvature and gradient are rounding noise
    (``3 * sum(r) - mean * sum(r)``), which a metric scaled to each
    coordinate's own curvature turns into steps of 1e23 (an unpenalised fit
    then stopped 0.6 above the optimum); the solvers keep those coefficients
    to the penalty alone (:meth:`sktorch_lr._solver.Problem.fix_constant_columns_`,
    :class:`sktorch_lr._batch.BatchProblem`). Dense ``X`` is compared with its
    first row a block of :data:`CONSTANT_CHECK_ROWS` at a time, and only the
    columns still equal go on, so data whose columns all vary in the first
    block cost that block.
    """
    n, d = X.shape
    if X.layout == torch.sparse_coo:
        X = X if X.is_coalesced() else X.coalesce()
        col, values = X.indices()[1], X.values()
        # Each column's smallest and largest entry, its implicit zeros included.
        implicit = torch.bincount(col, minlength=d) < n
        low = torch.where(implicit, 0.0, torch.inf).to(values.dtype)
        high = torch.where(implicit, 0.0, -torch.inf).to(values.dtype)
        low = low.scatter_reduce(0, col, values, "amin")
        high = high.scatter_reduce(0, col, values, "amax")
        mask, first = low == high, low
    else:
        first = X[0].clone()
        candidates = torch.arange(d, device=X.device)
        for start in range(0, n, CONSTANT_CHECK_ROWS):
            block = X[start : start + CONSTANT_CHECK_ROWS]
            if len(candidates) < d:
                block = block[:, candidates]
            candidates = candidates[(block == first[candidates]).all(0)]
            if not len(candidates):
                break
        mask = torch.zeros(d, dtype=torch.bool, device=X.device)
        mask[candidates] = True
    return (mask, first) if bool(mask.any()) else (None, None)


def to_float64(X, y, sample_weight):
    """``(X, y, sample_weight)`` in float64 (integer class indices stay integers)."""
    return (
        X.to(torch.float64),
        y.to(torch.float64) if y.is_floating_point() else y,
        None if sample_weight is None else sample_weight.to(torch.float64),
    )
