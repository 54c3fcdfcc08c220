"""Command line: ``python -m sktorch_lr demo`` replays the lesson with the package."""

import argparse
import sys
import time
import warnings


def demo(args):
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from sktorch_lr import TorchLogisticRegression
    from sktorch_lr.datasets import make_lesson_data

    X, y = make_lesson_data()
    print(f"The lesson's data: {X.shape[0]} points, 2 Gaussian classes of {X.shape[0] // 2}.")
    runs = {
        "lesson settings (lr=0.01, momentum=0.9, C=inf, full batch)": TorchLogisticRegression(
            lr=0.01, momentum=0.9, C=np.inf, batch_size=None
        ),
        "defaults (lr='auto', C=1)": TorchLogisticRegression(),
    }
    for name, est in runs.items():
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            est.fit(X, y)
        seconds = time.perf_counter() - start
        note = "  (max_iter reached)" if caught else ""
        print(
            f"{name}:\n  epochs {est.n_iter_}, final objective {est.loss_curve_[-1]:.4f}, "
            f"accuracy {est.score(X, y):.3f}, {seconds * 1e3:.0f} ms{note}"
        )
    sk = LogisticRegression().fit(X, y)
    print(f"sklearn LogisticRegression (lbfgs, C=1): accuracy {sk.score(X, y):.3f}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sktorch_lr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="fit the lesson's data and report")
    p_demo.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
