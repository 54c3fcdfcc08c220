"""sktorch_lr: a scikit-learn logistic regression trained as a PyTorch model."""

from ._cv import TorchLogisticRegressionCV
from ._estimator import TorchLogisticRegression
from ._solver import DivergenceError

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "TorchLogisticRegression",
    "TorchLogisticRegressionCV",
    "__version__",
]
