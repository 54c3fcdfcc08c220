"""scikit-learn's estimator checks over a few configurations, nothing else."""

import pytest
from sklearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_param_validation,
    parametrize_with_checks,
)

from sktorch_lr import TorchLogisticRegression, TorchLogisticRegressionCV

MINI_BATCH_REASON = (
    "Mini-batches are drawn over rows: a sample of weight 2 and the same sample repeated "
    "twice fall into different batches, so the two stochastic trajectories (and their "
    "stopping epochs) differ, although both minimise the same objective."
)

CONFIGURATIONS = [
    TorchLogisticRegression(),
    TorchLogisticRegression(batch_size=16, random_state=0),
    TorchLogisticRegression(l1_ratio=0.5, C=10.0),
    TorchLogisticRegression(warm_start=True),
    TorchLogisticRegressionCV(cv=3),
]
# The cross-validation with an L1 part trains its problems one by one: slower.
SLOW_CONFIGURATIONS = [
    TorchLogisticRegressionCV(cv=3, l1_ratios=[0.0, 0.5], scoring="neg_log_loss"),
]


def _expected_failed_checks(estimator):
    if getattr(estimator, "batch_size", None) not in (None, "auto"):
        return {
            "check_sample_weight_equivalence_on_dense_data": MINI_BATCH_REASON,
            "check_sample_weight_equivalence_on_sparse_data": MINI_BATCH_REASON,
        }
    return {}


@parametrize_with_checks(CONFIGURATIONS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks(SLOW_CONFIGURATIONS)
def test_sklearn_compatible_slow_configurations(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", CONFIGURATIONS, ids=repr)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", CONFIGURATIONS, ids=repr)
def test_dataframe_column_names_consistency(estimator):
    check_dataframe_column_names_consistency(type(estimator).__name__, estimator)
