"""scikit-learn's callback API: one sub-task per epoch, alone and nested."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression

callback = pytest.importorskip("sklearn.callback")


def test_scoring_monitor_logs_every_epoch(breast_cancer):
    X, y = breast_cancer
    monitor = callback.ScoringMonitor(scoring="accuracy")
    est = TorchLogisticRegression().set_callbacks(monitor).fit(X, y)
    rows = monitor.get_logs().data
    epochs = [r for r in rows if r["task_name"] == "epoch"]
    assert len(epochs) == est.n_iter_
    assert [r["task_id"] for r in epochs] == list(range(est.n_iter_))
    # the score of the last epoch's fitted_estimator is the final model's
    assert epochs[-1]["accuracy"] == pytest.approx(est.score(X, y))
    assert epochs[0]["accuracy"] < epochs[-1]["accuracy"]


def test_nested_in_pipeline_and_grid_search(breast_cancer):
    X, y = breast_cancer
    monitor = callback.ScoringMonitor(scoring="accuracy")
    inner = TorchLogisticRegression().set_callbacks(monitor)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), inner), {"torchlogisticregression__C": [0.1, 1.0]}, cv=2
    ).fit(X, y)
    rows = monitor.get_logs().data
    fits = [r for r in rows if r["task_name"] == "fit"]
    assert len(fits) == 2 * 2 + 1  # candidates x folds, then the refit
    assert sum(r["task_name"] == "epoch" for r in rows) > len(fits)
    assert search.best_score_ > 0.95


def test_progress_bar_alone_and_propagated(breast_cancer, capsys):
    pytest.importorskip("rich")
    X, y = breast_cancer
    TorchLogisticRegression().set_callbacks(callback.ProgressBar()).fit(X, y)
    GridSearchCV(
        make_pipeline(StandardScaler(), TorchLogisticRegression()),
        {"torchlogisticregression__C": [0.1, 1.0]},
        cv=2,
    ).set_callbacks(callback.ProgressBar(max_propagation_depth=None)).fit(X, y)


class _StopAfter:
    """A FitCallback that asks training to stop after a number of epochs."""

    def __init__(self, epochs):
        self.epochs = epochs

    def setup(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        return context.task_name == "epoch" and context.task_id + 1 >= self.epochs

    def teardown(self, estimator, context):
        pass


def test_a_callback_can_stop_training_without_a_convergence_warning(breast_cancer, recwarn):
    X, y = breast_cancer
    est = TorchLogisticRegression().set_callbacks(_StopAfter(3)).fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert not any("did not converge" in str(w.message) for w in recwarn)


def test_without_callbacks_nothing_changes(breast_cancer):
    X, y = breast_cancer
    a = TorchLogisticRegression().fit(X, y)
    b = TorchLogisticRegression().set_callbacks(callback.ScoringMonitor(scoring="accuracy"))
    b.fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
