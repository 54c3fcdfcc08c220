import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sktorch_lr._data import TrainingData, as_tensor, resolve_device


def test_numpy_is_shared_not_copied():
    X = np.random.RandomState(0).randn(10, 3)
    t = as_tensor(X, torch.device("cpu"), torch.float64)
    assert t.data_ptr() == X.__array_interface__["data"][0]


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
