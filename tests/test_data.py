import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sktorch_lr._data import TrainingData, as_tensor, resolve_device, training_layout


def test_numpy_is_shared_not_copied():
    X = np.random.RandomState(0).randn(10, 3)
    t = as_tensor(X, torch.device("cpu"), torch.float64)
    assert t.data_ptr() == X.__array_interface__["data"][0]


def _address(X):
    return X.data_ptr() if isinstance(X, torch.Tensor) else X.__array_interface__["data"][0]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("container", ["numpy", "tensor"])
def test_contiguous_memory_is_trained_on_as_it_is(order, container):
    X = np.asarray(np.random.RandomState(0).randn(20, 3), order=order)
    X = torch.from_numpy(X) if container == "tensor" else X
    assert _address(training_layout(X)) == _address(X)


@pytest.mark.parametrize(
    "make",
    [
        lambda X: X[:, :3],  # a column slice: rows 6 apart
        lambda X: X[::2],
        lambda X: X[:, ::2],
        lambda X: X[::-1],
        lambda X: torch.from_numpy(X)[:, 1:4],
        lambda X: torch.ones(1, 6).expand(20, 6),
    ],
)
def test_strided_memory_is_copied_once_into_contiguous_memory(make):
    X = make(np.random.RandomState(0).randn(20, 6))
    out = training_layout(X)
    as_numpy = out.numpy() if isinstance(out, torch.Tensor) else out
    assert as_numpy.flags.c_contiguous or as_numpy.flags.f_contiguous
    np.testing.assert_array_equal(as_numpy, np.asarray(X))


def test_read_only_memory_is_copied_and_left_read_only():
    X = np.random.RandomState(0).randn(20, 3)
    X.setflags(write=False)
    out = training_layout(X)
    assert out.flags.writeable and not X.flags.writeable
    np.testing.assert_array_equal(out, X)


def test_float32_stays_float32():
    X = np.ones((4, 2), dtype=np.float32)
    assert as_tensor(X, torch.device("cpu"), torch.float32).dtype == torch.float32


def test_sparse_stays_sparse():
    X = sp.random(100, 50, density=0.05, format="csr", random_state=0)
    t = as_tensor(X, torch.device("cpu"), torch.float64)
    assert t.layout == torch.sparse_coo and t._nnz() == X.nnz
    np.testing.assert_array_equal(t.to_dense().numpy(), X.toarray())
    data = TrainingData(
        X, np.zeros(100), None, binary=True, device=torch.device("cpu"), dtype=torch.float64
    )
    idx = torch.tensor([5, 2, 99])
    Xb, _, _ = data.batch(idx)
    assert Xb.layout == torch.sparse_coo
    np.testing.assert_array_equal(Xb.to_dense().numpy(), X[[5, 2, 99]].toarray())


def test_curvature_sample_is_deterministic_and_strided():
    X = np.arange(20.0).reshape(10, 2)
    data = TrainingData(
        X, np.zeros(10), None, binary=True, device=torch.device("cpu"), dtype=torch.float64
    )
    Xs, _, _ = data.float64_sample(data.curvature_rows(4))
    np.testing.assert_array_equal(Xs[:, 0].numpy(), [0.0, 6.0, 12.0, 18.0])


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="not a device name"):
        resolve_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("container", ["dense", "float32 tensor", "sparse"])
def test_constant_columns_and_their_exact_means(container):
    """Constant columns are found in every container (a sparse column's implicit zeros
    count, stored zeros too), and the mean the solver centres on is their value exactly."""
    rng = np.random.default_rng(0)
    n = 9000  # more than one block of CONSTANT_CHECK_ROWS
    X = rng.normal(size=(n, 7))
    X[:, 1] = 0.1  # constant: the rounded mean of 9,000 copies of 0.1 is not 0.1
    X[:, 3] = 0.0
    X[:, 4] = 3.0
    X[-1, 4] = 3.5  # equal up to the last row: not constant
    X[:, 5] = 0.0
    X[n // 2, 5] = 1.0  # a single non-zero
    X[:, 6] = 0.0
    dtype = torch.float32 if container == "float32 tensor" else torch.float64
    if container == "sparse":
        Xin = sp.csr_matrix(X)
    elif container == "dense":
        Xin = X
    else:
        Xin = torch.tensor(X, dtype=dtype)
    w = rng.uniform(0.5, 2.0, n)
    data = TrainingData(Xin, np.zeros(n), w, binary=True, device=torch.device("cpu"), dtype=dtype)
    mask, values = data.constant_columns()
    assert mask.tolist() == [False, True, False, True, False, False, True]
    mean = data.weighted_mean()
    assert mean[1] == torch.tensor(0.1, dtype=dtype) and mean[3] == 0 and mean[6] == 0
    assert values[1] == torch.tensor(0.1, dtype=dtype)
    varying = TrainingData(
        rng.normal(size=(50, 3)),
        np.zeros(50),
        None,
        binary=True,
        device=torch.device("cpu"),
        dtype=torch.float64,
    )
    assert varying.constant_columns() == (None, None)
