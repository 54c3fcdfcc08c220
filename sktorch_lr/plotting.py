"""Figures: decision boundaries, loss curves, training snapshots and gradient history.

Matplotlib is imported only when a function here is called; without it they
raise an ImportError that names the extra to install
(``pip install "sktorch_lr[plot]"``). Every function returns matplotlib
objects and draws into the axes it is given, or into a new figure.
"""

import numbers

import numpy as np
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from ._base import _check_type

__all__ = [
    "animate_training",
    "plot_decision_boundary",
    "plot_gradient_history",
    "plot_loss_curve",
    "plot_training_snapshots",
    "save_training_gif",
]


_CLASS_COLOURS = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # tests/test_plotting.py fakes a failing import
        raise ImportError(
            "sktorch_lr.plotting needs matplotlib: pip install 'sktorch_lr[plot]'"
        ) from exc
    return plt


def _axes(ax, figsize=(6, 5)):
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _scatter_classes(ax, X, y, classes):
    colors = _CLASS_COLOURS
    for i, label in enumerate(classes):
        mask = np.asarray(y) == label
        ax.scatter(
            X[mask, 0],
            X[mask, 1],
            s=18,
            color=colors[i % len(colors)],
            edgecolor="white",
            linewidth=0.4,
            label=f"class {label:g}"
            if isinstance(label, (int, float, np.number))
            else f"class {label}",
        )


def _colour_kwargs(n_classes):
    """``cmap`` for a binary surface; for several classes, regions in the points' colours.

    ``multiclass_colors`` exists from scikit-learn 1.7; before, a qualitative colour map.
    """
    import inspect

    from sklearn.inspection import DecisionBoundaryDisplay

    if n_classes == 2:
        return {"cmap": "RdBu"}
    if "multiclass_colors" in inspect.signature(DecisionBoundaryDisplay.from_estimator).parameters:
        colours = [_CLASS_COLOURS[i % len(_CLASS_COLOURS)] for i in range(n_classes)]
        return {"multiclass_colors": colours}
    return {"cmap": "tab10"}


def _two_features(X, y, what):
    """``X`` as a 2-D array of exactly two columns, with one label in ``y`` per row,
    or a ValueError that says which is not so."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(
            f"{what} is drawn in the plane of two features; X has shape {X.shape}. "
            "Select two columns (or project, e.g. with PCA) first."
        )
    check_consistent_length(X, y)
    return X


def _legend_above(ax, **kwargs):
    """A legend in a row above the axes, where it covers no point."""
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01, 1.0, 0.1),
        mode="expand",
        ncols=3,
        fontsize="x-small",
        frameon=False,
        **kwargs,
    )


def _label(value):
    return f"{value:g}" if isinstance(value, (int, float, np.number)) else f"{value}"


def plot_decision_boundary(
    estimator, X, y, ax=None, *, feature_names=("x1", "x2"), title=None, grid_resolution=200
):
    """Both classes and the estimator's decision regions, for 2-D data.

    Built on :class:`sklearn.inspection.DecisionBoundaryDisplay`: the
    probability of the positive class for a binary model (with the 0.5 contour,
    the lesson's boundary line), the predicted class for a multiclass one.

    Parameters
    ----------
    estimator : fitted classifier with two input features
    X : array-like of shape (n_samples, 2)
    y : array-like of shape (n_samples,)
    ax : matplotlib Axes, default=None
    feature_names : pair of str, default=("x1", "x2")
    title : str, default=None
    grid_resolution : int, default=200

    Returns
    -------
    display : sklearn.inspection.DecisionBoundaryDisplay
    """
    from sklearn.inspection import DecisionBoundaryDisplay

    check_is_fitted(estimator)
    X = _two_features(X, y, "A decision boundary")
    ax = _axes(ax)
    classes = estimator.classes_
    binary = len(classes) == 2
    display = DecisionBoundaryDisplay.from_estimator(
        estimator,
        X,
        response_method="predict_proba" if binary else "predict",
        plot_method="contourf",
        grid_resolution=grid_resolution,
        **_colour_kwargs(len(classes)),
        # Probabilities: levels on [0, 1] exactly (the default ones overshoot to 1.05).
        **({"levels": np.linspace(0.0, 1.0, 11)} if binary else {}),
        alpha=0.35 if binary else 0.2,
        ax=ax,
        xlabel=feature_names[0],
        ylabel=feature_names[1],
    )
    if binary:
        ax.contour(
            display.xx0, display.xx1, display.response, levels=[0.5], colors="k", linewidths=1.5
        )
        ax.plot([], [], color="k", label="boundary p = 0.5")
        ax.figure.colorbar(display.surface_, ax=ax, label=f"P(class {_label(classes[1])})")
    _scatter_classes(ax, X, y, classes)
    _legend_above(ax)
    name = type(estimator).__name__
    ax.set_title(title or f"{name}: decision {'boundary' if binary else 'regions'}")
    return display


def plot_loss_curve(estimator, ax=None, *, label=None, title=None, log=True):
    """The objective after every epoch (``loss_curve_``).

    Parameters
    ----------
    estimator : fitted TorchLogisticRegression or TorchLogisticRegressionCV
        (the latter's refit).
    ax : matplotlib Axes, default=None
    label : str, default=None
        Legend entry; defaults to the epochs and final objective.
    title : str, default=None
    log : bool, default=True
        Logarithmic objective axis.

    Returns
    -------
    line : matplotlib Line2D
    """
    check_is_fitted(estimator)
    if not hasattr(estimator, "loss_curve_"):
        raise TypeError(
            f"plot_loss_curve draws loss_curve_, which {type(estimator).__name__} does not "
            "record: fit a TorchLogisticRegression (or TorchLogisticRegressionCV)."
        )
    curve = np.asarray(estimator.loss_curve_)
    if len(curve) == 0:
        raise ValueError(
            "loss_curve_ is empty: no epochs to draw (TorchLogisticRegressionCV with "
            "refit=False trains no final model)."
        )
    ax = _axes(ax)
    epochs = np.arange(1, len(curve) + 1)
    label = label or f"{len(curve)} epochs, final {curve[-1]:.4g}"
    (line,) = ax.plot(epochs, curve, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("objective J (loss + penalty)")
    ax.set_title(title or "Training objective per epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return line


def plot_gradient_history(estimator, axes=None, *, title=None):
    """Four panels of ``gradient_history_`` (needs ``track_gradients=True``).

    The objective, the gradient norm, the size of each epoch's update and the
    distance travelled from the starting point, per epoch.

    Returns
    -------
    axes : ndarray of four matplotlib Axes
    """
    check_is_fitted(estimator)
    if not hasattr(estimator, "gradient_history_"):
        raise ValueError("Fit the estimator with track_gradients=True to record its history.")
    plt = _pyplot()
    if axes is None:
        fig, axes = plt.subplots(2, 2, figsize=(9, 6), layout="constrained")
    else:
        fig = np.ravel(axes)[0].figure
    axes = np.ravel(axes)
    h = estimator.gradient_history_
    epochs = np.arange(1, len(h["objective"]) + 1)
    panels = [
        ("objective", "objective J", True),
        ("grad_norm", "||grad J||", True),
        ("update_norm", "||parameter change||", True),
        ("distance_from_init", "||theta - theta_0||", False),
    ]
    for ax, (key, ylabel, log) in zip(axes, panels, strict=True):
        ax.plot(epochs, h[key], label=key)
        if log and np.all(np.asarray(h[key]) > 0):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(title or "Gradient history during training")
    return axes


def _lesson_line(ax, coef, intercept, xlim):
    """The lesson's boundary ``x2 = (-w0 * x1 - b) / w1`` (binary, 2-D)."""
    w0, w1 = coef[0]
    b = intercept[0]
    x1 = np.linspace(*xlim, 100)
    if abs(w1) < 1e-12:
        return ax.axvline(-b / w0 if w0 else 0.0, color="k", label="boundary")
    return ax.plot(x1, (-w0 * x1 - b) / w1, color="k", lw=2, label="boundary")[0]


def _snapshot_epochs(estimator, every, max_frames=None):
    """The recorded history and the epochs to draw: every ``every`` (widened to fit
    ``max_frames``, keeping the spacing even) and the last one."""
    check_is_fitted(estimator)
    _check_type(every, "every", numbers.Integral, "a whole number of epochs")
    if every < 1:
        raise ValueError(f"every must be a positive number of epochs, got {every!r}.")
    h = getattr(estimator, "gradient_history_", None)
    if h is None:
        raise ValueError("Fit the estimator with track_gradients=True to record its snapshots.")
    n = len(h["coef"])
    if max_frames is not None and n // every + 1 > max_frames:
        every *= -(-n // (every * max(max_frames - 1, 1)))
    epochs = list(range(every, n + 1, every))
    if not epochs or epochs[-1] != n:
        epochs.append(n)
    return h, epochs, every


def _frame_title(estimator, X, y, h, epoch):
    """The lesson's caption of a snapshot: epoch, objective, accuracy, weights, bias."""
    coef, intercept = h["coef"][epoch - 1], h["intercept"][epoch - 1]
    z = X @ coef.T + intercept
    pred = (z[:, 0] > 0).astype(int) if z.shape[1] == 1 else z.argmax(1)
    acc = np.mean(estimator.classes_[pred] == np.asarray(y))
    return (
        f"epoch {epoch}: loss {h['objective'][epoch - 1]:.3f}, acc {acc:.1%}\n"
        f"w = ({coef[0, 0]:.2f}, {coef[0, 1]:.2f}), b = {intercept[0]:.2f}"
    )


def _draw_frame(ax, estimator, X, y, h, epoch, xlim, ylim):
    _scatter_classes(ax, X, y, estimator.classes_)
    _lesson_line(ax, h["coef"][epoch - 1], h["intercept"][epoch - 1], xlim)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(_frame_title(estimator, X, y, h, epoch), fontsize="small")


def _limits(X, pad=1.0):
    X = np.asarray(X)
    return (X[:, 0].min() - pad, X[:, 0].max() + pad), (X[:, 1].min() - pad, X[:, 1].max() + pad)


def plot_training_snapshots(estimator, X, y, *, every=20, ncols=4, max_frames=12, title=None):
    """The boundary every ``every`` epochs, as the lesson plots it, in a grid of frames.

    Needs a binary model on 2-D data fitted with ``track_gradients=True``
    (the parameters of every epoch are in ``gradient_history_``). Each frame
    shows both classes, the line ``x2 = (-w0 * x1 - b) / w1``, the objective,
    the weights and the accuracy.

    Returns
    -------
    fig : matplotlib Figure
    """
    plt = _pyplot()
    _check_type(ncols, "ncols", numbers.Integral, "an integer")
    _check_type(max_frames, "max_frames", numbers.Integral, "an integer")
    if ncols < 1 or max_frames < 1:
        raise ValueError(f"ncols and max_frames must be at least 1, got {ncols} and {max_frames}.")
    X = _two_features(X, y, "A training snapshot")
    h, epochs, every = _snapshot_epochs(estimator, every, max_frames)
    if h["coef"].shape[1:] != (1, 2):
        raise ValueError("Training snapshots draw a binary model on two features.")
    ncols = min(ncols, len(epochs))
    nrows = -(-len(epochs) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False, layout="constrained"
    )
    xlim, ylim = _limits(X)
    for ax, epoch in zip(axes.ravel(), epochs, strict=False):
        _draw_frame(ax, estimator, X, y, h, epoch, xlim, ylim)
    for ax in axes.ravel()[len(epochs) :]:
        ax.set_visible(False)
    axes.ravel()[0].legend(loc="lower left", fontsize="x-small")
    last = "" if epochs[-1] % every == 0 else f", and the last, {epochs[-1]}"
    fig.suptitle(title or f"The decision boundary during training (every {every} epochs{last})")
    return fig


def _animation(estimator, X, y, every, title, fps):
    """A figure with the first frame drawn, and ``draw(i)`` that moves it to frame ``i``."""
    if not (isinstance(fps, numbers.Real) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}.")
    plt = _pyplot()
    X = _two_features(X, y, "A training animation")
    h, epochs, every = _snapshot_epochs(estimator, every)
    if h["coef"].shape[1:] != (1, 2):
        raise ValueError("Training animations draw a binary model on two features.")
    fig, ax = plt.subplots(figsize=(5, 4.5))
    xlim, ylim = _limits(X)
    # Draw the first frame once, then only move the line and rewrite the title.
    _draw_frame(ax, estimator, X, y, h, epochs[0], xlim, ylim)
    line = ax.lines[-1]
    ax.legend(loc="lower left", fontsize="x-small")
    fig.suptitle(title or "The decision boundary during training", fontsize="medium")
    fig.tight_layout()
    x1 = np.linspace(*xlim, 100)

    def draw(i):
        epoch = epochs[i]
        coef, intercept = h["coef"][epoch - 1], h["intercept"][epoch - 1]
        (w0, w1), b = coef[0], intercept[0]
        line.set_data(x1, (-w0 * x1 - b) / w1 if abs(w1) > 1e-12 else np.full_like(x1, np.nan))
        ax.set_title(_frame_title(estimator, X, y, h, epoch), fontsize="small")
        return [line]

    return fig, draw, len(epochs)


def animate_training(estimator, X, y, *, every=20, fps=6, title=None):
    """The moving boundary as a :class:`matplotlib.animation.FuncAnimation`.

    Same frames as :func:`plot_training_snapshots` (binary model, 2-D data,
    ``track_gradients=True``); :func:`save_training_gif` writes them to a file.

    Returns
    -------
    animation : matplotlib.animation.FuncAnimation
    """
    from matplotlib.animation import FuncAnimation

    fig, draw, n_frames = _animation(estimator, X, y, every, title, fps)
    return FuncAnimation(fig, draw, frames=n_frames, interval=1000 / fps, blit=False)


def save_training_gif(estimator, X, y, path, *, every=20, fps=6, dpi=80, title=None):
    """Write the moving boundary to an animated GIF at ``path`` and return the path.

    Each frame is drawn once and handed to Pillow (which matplotlib depends on).
    """
    from PIL import Image

    plt = _pyplot()
    fig, draw, n_frames = _animation(estimator, X, y, every, title, fps)
    fig.set_dpi(dpi)
    frames = []
    for i in range(n_frames):
        draw(i)
        fig.canvas.draw()
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
    plt.close(fig)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return path
