"""Command line: python -m sktorch_lr demo [--out DIR] replays the lesson with the package.

The lesson's data (two 2-D Gaussian classes, 100 points each) is fitted with the
lesson's settings (lr=0.01, momentum=0.9, no penalty, full batch), with lr='auto'
on the same unpenalised objective, and with the defaults (lr='auto', C=1).
Progress is printed while they train; then the epochs, final objective and
accuracy of each, and figures in DIR: the decision boundary, the loss curves of
the two runs on the same objective, the boundary during the lesson's training
(a grid of frames and an animated GIF) and the boundary beside scikit-learn's
LogisticRegression's.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path


def demo(out="demo_output", show_progress=True):
    """Run the demo, write its figures to ``out`` and return the fitted runs."""
    from sktorch_lr.plotting import _pyplot

    _pyplot()  # without matplotlib: an ImportError naming the extra to install
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from sktorch_lr import TorchLogisticRegression
    from sktorch_lr.datasets import make_lesson_data
    from sktorch_lr.plotting import (
        plot_decision_boundary,
        plot_loss_curve,
        plot_training_snapshots,
        save_training_gif,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    X, y = make_lesson_data()
    print(f"The lesson's data: {len(X)} points, two 2-D Gaussian classes of {len(X) // 2}.")
    runs = {
        "lesson settings (lr=0.01, momentum=0.9, C=inf, full batch)": TorchLogisticRegression(
            lr=0.01,
            momentum=0.9,
            C=np.inf,
            batch_size=None,
            track_gradients=True,
            verbose=int(show_progress),
        ),
        "same objective, lr='auto' (C=inf)": TorchLogisticRegression(
            C=np.inf, verbose=int(show_progress)
        ),
        "defaults (lr='auto', C=1)": TorchLogisticRegression(
            track_gradients=True, verbose=int(show_progress)
        ),
    }
    results = {}
    for name, est in runs.items():
        print(f"\nTraining with the {name}:")
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            est.fit(X, y)
        seconds = time.perf_counter() - start
        measure = "Newton decrement" if est.lr == "auto" else "max|grad|"
        note = " (stopped by max_iter)" if caught else f" (converged: {measure} <= tol)"
        acc = est.score(X, y)
        results[name] = est
        print(
            f"  -> epochs {est.n_iter_}{note}, final objective {est.loss_curve_[-1]:.4f}, "
            f"accuracy {acc:.3f}, {seconds * 1e3:.0f} ms"
        )
    lesson, auto_inf, default = results.values()
    sk = LogisticRegression().fit(X, y)
    print(f"\nsklearn LogisticRegression (lbfgs, C=1): accuracy {sk.score(X, y):.3f}")

    written = []

    def save(fig, name):
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    plot_decision_boundary(
        default, X, y, ax=ax, title="TorchLogisticRegression (defaults) on the lesson's data"
    )
    save(fig, "decision_boundary.png")

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    plot_loss_curve(
        lesson, ax=ax, label=f"lesson settings (lr=0.01, momentum=0.9): {lesson.n_iter_} epochs"
    )
    plot_loss_curve(auto_inf, ax=ax, label=f"lr='auto': {auto_inf.n_iter_} epochs")
    ax.set_title("The same objective (no penalty, C=inf): the lesson's settings vs lr='auto'")
    save(fig, "loss_curves.png")

    fig = plot_training_snapshots(lesson, X, y, every=20)
    save(fig, "training_snapshots.png")

    written.append(save_training_gif(lesson, X, y, out / "training.gif", every=20))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained", sharey=True)
    plot_decision_boundary(default, X, y, ax=axes[0], title="TorchLogisticRegression (C=1)")
    plot_decision_boundary(sk, X, y, ax=axes[1], title="sklearn LogisticRegression (C=1)")
    fig.suptitle(
        "Same objective, same answer: max |coef difference| = "
        f"{np.abs(default.coef_ - sk.coef_).max():.2e}"
    )
    save(fig, "vs_sklearn.png")

    print("\nFigures written:")
    for path in written:
        print(f"  {path}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sktorch_lr",
        description="sktorch_lr: a scikit-learn logistic regression trained by PyTorch.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_demo = sub.add_parser(
        "demo",
        help="replay the lesson: train, report, write figures",
        description=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p_demo.add_argument(
        "--out", default="demo_output", metavar="DIR", help="folder for the figures"
    )
    p_demo.add_argument("--quiet", action="store_true", help="no progress lines while training")
    args = parser.parse_args(argv)
    if args.command == "demo":
        try:
            demo(args.out, show_progress=not args.quiet)
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # --out not a folder we can create or write to
            print(f"error: cannot write the figures to {args.out!r}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
