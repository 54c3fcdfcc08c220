"""to_sklearn(): a LogisticRegression with our predictions, and on to ONNX."""

import numpy as np
import pytest
from sklearn.datasets import load_iris

from sktorch_lr import TorchLogisticRegression

# Ecosystem tests (skl2onnx and onnxruntime): run by .ci/run with -m slow.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
@pytest.mark.parametrize("l1_ratio", [0.0, 0.5])
def test_to_sklearn_predicts_like_us(dataset, l1_ratio, request):
    X, y = request.getfixturevalue(dataset)
    ours = TorchLogisticRegression(l1_ratio=l1_ratio).fit(X, y)
    sk = ours.to_sklearn()
    assert type(sk).__name__ == "LogisticRegression"
    assert sk.C == ours.C and sk.l1_ratio == l1_ratio
    np.testing.assert_array_equal(sk.predict(X), ours.predict(X))
    np.testing.assert_allclose(sk.predict_proba(X), ours.predict_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sk.decision_function(X), ours.decision_function(X), atol=1e-10)
    sk.coef_[0, 0] += 1.0  # a copy: ours is untouched
    assert sk.coef_[0, 0] != ours.coef_[0, 0]


def test_to_sklearn_keeps_feature_names_and_refits_the_same_problem(breast_cancer):
    pd = pytest.importorskip("pandas")
    X, y = breast_cancer
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    ours = TorchLogisticRegression(tol=1e-7, max_iter=5000).fit(df, y)
    sk = ours.to_sklearn()
    np.testing.assert_array_equal(sk.feature_names_in_, df.columns)
    refit = sk.__class__(**sk.get_params()).set_params(tol=1e-10, max_iter=10_000).fit(df, y)
    np.testing.assert_allclose(refit.coef_, ours.coef_, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("multiclass", [False, True])
def test_onnx_export_through_skl2onnx(multiclass, breast_cancer):
    skl2onnx = pytest.importorskip("skl2onnx")
    ort = pytest.importorskip("onnxruntime")
    from skl2onnx.common.data_types import FloatTensorType

    X, y = load_iris(return_X_y=True) if multiclass else breast_cancer
    X = X.astype(np.float32)
    ours = TorchLogisticRegression().fit(X, y)
    onx = skl2onnx.to_onnx(
        ours.to_sklearn(),
        initial_types=[("X", FloatTensorType([None, X.shape[1]]))],
        options={"zipmap": False},
        target_opset=17,
    )
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {"X": X})
    np.testing.assert_array_equal(labels, ours.predict(X))
    np.testing.assert_allclose(proba, ours.predict_proba(X), atol=1e-5)
