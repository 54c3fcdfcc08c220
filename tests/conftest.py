import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.preprocessing import StandardScaler

from sktorch_lr._objective import objective, penalty_strengths
from sktorch_lr.datasets import make_lesson_data


@pytest.fixture(scope="session")
def lesson_data():
    return make_lesson_data()


@pytest.fixture(scope="session")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="session")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="session")
def digits():
    return load_digits(return_X_y=True)


def objective_value(coef, intercept, X, y, *, C=1.0, l1_ratio=0.0, sample_weight=None):
    """The package's objective (float64) at numpy ``coef_`` / ``intercept_``."""
    classes = np.unique(y)
    X = torch.as_tensor(np.asarray(X, dtype=np.float64))
    if len(classes) == 2:
        yt = torch.as_tensor((y == classes[1]).astype(np.float64))
    else:
        yt = torch.as_tensor(np.searchsorted(classes, y))
    sw = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float64)
    S = len(y) if sample_weight is None else float(np.sum(sample_weight))
    value = objective(
        torch.as_tensor(coef, dtype=torch.float64),
        torch.as_tensor(intercept, dtype=torch.float64),
        X,
        yt,
        sw,
        penalty_strengths(C, l1_ratio, S),
        normalizer=S,
    )
    return float(value)
