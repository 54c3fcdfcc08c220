import builtins

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402

from sktorch_lr import (
    TorchLogisticRegression,  # noqa: E402
    plotting,  # noqa: E402
)


@pytest.fixture(scope="module")
def fitted(lesson_data):
    X, y = lesson_data
    return TorchLogisticRegression(track_gradients=True).fit(X, y), X, y


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_decision_boundary_binary_and_multiclass(fitted):
    est, X, y = fitted
    display = plotting.plot_decision_boundary(est, X, y)
    ax = display.ax_
    assert ax.get_xlabel() == "x1" and "decision boundary" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["boundary p = 0.5", "class 0", "class 1"]
    Xi, yi = load_iris(return_X_y=True)
    Xi = Xi[:, :2]
    multi = TorchLogisticRegression().fit(Xi, yi)
    d2 = plotting.plot_decision_boundary(multi, Xi, yi, feature_names=("sepal", "width"))
    assert "regions" in d2.ax_.get_title() and len(d2.ax_.get_legend().get_texts()) == 3


def test_loss_curve_and_gradient_history(fitted):
    est, _, _ = fitted
    line = plotting.plot_loss_curve(est)
    np.testing.assert_array_equal(line.get_ydata(), est.loss_curve_)
    axes = plotting.plot_gradient_history(est)
    assert len(axes) == 4 and all(ax.get_xlabel() == "epoch" for ax in axes)
    with pytest.raises(ValueError, match="track_gradients"):
        plotting.plot_gradient_history(TorchLogisticRegression().fit([[0.0], [1.0]], [0, 1]))


def test_loss_curve_of_the_cv_refit_and_clear_errors_without_one(lesson_data):
    from sklearn.linear_model import LogisticRegression

    from sktorch_lr import TorchLogisticRegressionCV

    X, y = lesson_data
    cv = TorchLogisticRegressionCV(Cs=3).fit(X, y)
    assert len(cv.loss_curve_) == cv.refit_n_iter_ > 0
    np.testing.assert_array_equal(plotting.plot_loss_curve(cv).get_ydata(), cv.loss_curve_)
    with pytest.raises(ValueError, match="refit=False"):
        plotting.plot_loss_curve(TorchLogisticRegressionCV(Cs=3, refit=False).fit(X, y))
    with pytest.raises(TypeError, match="LogisticRegression does not record"):
        plotting.plot_loss_curve(LogisticRegression().fit(X, y))


def test_snapshots_animation_and_gif(fitted, tmp_path):
    est, X, y = fitted
    fig = plotting.plot_training_snapshots(est, X, y, every=5)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible[0].get_title().startswith("epoch 5:")
    assert visible[-1].get_title().startswith(f"epoch {est.n_iter_}:")
    anim = plotting.animate_training(est, X, y, every=5)
    anim._draw_was_started = True  # not rendered in a test
    path = plotting.save_training_gif(est, X, y, tmp_path / "t.gif", every=5)
    from PIL import Image

    with Image.open(path) as gif:
        assert gif.n_frames == len(range(5, est.n_iter_ + 1, 5)) + (est.n_iter_ % 5 != 0)


@pytest.mark.parametrize("fps", [0, -2, "6"])
def test_animations_refuse_a_bad_frame_rate(fitted, tmp_path, fps):
    est, X, y = fitted
    with pytest.raises(ValueError, match="fps"):
        plotting.animate_training(est, X, y, fps=fps)  # 0 divided by zero
    with pytest.raises(ValueError, match="fps"):
        plotting.save_training_gif(est, X, y, tmp_path / "t.gif", fps=fps)


@pytest.mark.parametrize("every, error", [(0, ValueError), (2.5, TypeError), ("5", TypeError)])
def test_snapshots_refuse_a_bad_spacing(fitted, every, error):
    est, X, y = fitted
    with pytest.raises(error, match="every must be"):
        plotting.plot_training_snapshots(est, X, y, every=every)
    with pytest.raises(error, match="every must be"):
        plotting.animate_training(est, X, y, every=every)


@pytest.mark.parametrize("kwargs", [{"ncols": "4"}, {"max_frames": 2.5}])
def test_snapshots_refuse_a_non_integer_grid(fitted, kwargs):
    est, X, y = fitted
    with pytest.raises(TypeError, match="must be an integer"):
        plotting.plot_training_snapshots(est, X, y, **kwargs)


def test_plots_refuse_labels_of_another_length(fitted):
    est, X, y = fitted
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        plotting.plot_decision_boundary(est, X, y[:-1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        plotting.plot_training_snapshots(est, X, y[:-1])


def test_missing_matplotlib_names_the_extra(monkeypatch, fitted):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"sktorch_lr\[plot\]"):
        plotting.plot_loss_curve(fitted[0])
