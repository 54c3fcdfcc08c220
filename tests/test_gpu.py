"""The CUDA path end to end. Skips cleanly without a GPU (CI has none)."""

import pickle

import numpy as np
import pytest
import torch

from sktorch_lr import TorchLogisticRegression

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_fit_on_cuda_numpy_in_numpy_out(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression(device="cuda").fit(X, y)
    assert est.module_.linear.weight.device.type == "cuda"
    cpu = TorchLogisticRegression().fit(X, y)
    proba = est.predict_proba(X)
    assert isinstance(proba, np.ndarray)
    np.testing.assert_allclose(est.coef_, cpu.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(proba, cpu.predict_proba(X), atol=1e-8)


def test_cuda_tensors_used_in_place(breast_cancer):
    X, y = breast_cancer
    Xt = torch.as_tensor(X, dtype=torch.float32, device="cuda")
    yt = torch.as_tensor(y, device="cuda")
    est = TorchLogisticRegression(device="cuda").fit(Xt, yt)
    assert est.module_.linear.weight.dtype == torch.float32
    pred = est.predict(Xt)
    assert isinstance(pred, torch.Tensor) and pred.device.type == "cuda"
    assert est.score(Xt, yt) > 0.97


def test_gpu_fit_pickles_to_cpu(breast_cancer):
    X, y = breast_cancer
    est = TorchLogisticRegression(device="cuda", batch_size=64, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    assert restored.module_.linear.weight.device.type == "cpu"
    assert all(b.device.type == "cpu" for b in restored._solver_state.buffers)
    np.testing.assert_allclose(restored.predict_proba(X), est.predict_proba(X), atol=1e-12)
    assert est.module_.linear.weight.device.type == "cuda"  # the original stays on the GPU


def test_cross_validation_batch_on_cuda(breast_cancer, iris):
    from sktorch_lr import TorchLogisticRegressionCV

    for X, y in (breast_cancer, iris):
        gpu = TorchLogisticRegressionCV(Cs=5, device="cuda", tol=1e-8).fit(X, y)
        cpu = TorchLogisticRegressionCV(Cs=5, tol=1e-8).fit(X, y)
        assert gpu.C_ == cpu.C_
        assert gpu.module_.linear.weight.device.type == "cuda"
        scale = np.maximum(1.0, np.abs(cpu.coefs_paths_))
        assert np.max(np.abs(gpu.coefs_paths_ - cpu.coefs_paths_) / scale) < 1e-5
