"""sktorch_lr: a scikit-learn logistic regression trained as a PyTorch model."""

from ._estimator import TorchLogisticRegression
from ._solver import DivergenceError

__version__ = "0.1.0"

__all__ = ["DivergenceError", "TorchLogisticRegression", "__version__"]
