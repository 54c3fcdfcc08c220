"""Benchmarks: TorchLogisticRegression against the anchors, side by side in one process.

    python benchmarks/run.py            # everything (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # small cases only, fewer repeats

Anchors: sklearn LogisticRegression (lbfgs), SGDClassifier(loss="log_loss"),
skorch's NeuralNetBinaryClassifier with the same Linear module and SGD momentum
(if skorch is installed: ``pip install skorch``), and the lesson's plain torch
loop. Metrics: fit wall time (median over repeats), final objective minus the
optimum (the optimum from a tight Newton fit with the same C), time to reach
the optimum + 1e-3 (the cheapest of fits with max_iter = 1, 2, 4, ... that gets
there), peak extra memory during the fit (RSS sampled every 2 ms), and on large
data one streaming read of X (the memory-bandwidth floor).

Every anchor (scikit-learn, statsmodels) is timed twice, with its BLAS at the
default thread count and at one thread, and the faster is reported, marked
"[1 BLAS thread]" when that was it: on this 2-core VM OpenBLAS's two threads
make lbfgs on digits-sized multinomial problems up to 20x slower than one
(LogisticRegressionCV on standardised digits: 6.6 s against 0.30 s), and a
comparison with a crippled anchor says nothing.

Writes ``results.json``, ``results.md`` and ``results.png`` to ``--out``
(default ``benchmarks/results``), with the machine they ran on.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sktorch_lr import TorchLogisticRegression, TorchLogisticRegressionCV  # noqa: E402
from sktorch_lr._objective import objective, penalty_strengths  # noqa: E402
from sktorch_lr.datasets import make_lesson_data  # noqa: E402

warnings.simplefilter("ignore", ConvergenceWarning)


# ----------------------------------------------------------------- helpers


def machine():
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def median_time(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def anchor_time(fn, repeats, warm_up=False):
    """``median_time`` of an anchor at its faster BLAS setting: ``(seconds, out, blas_threads)``.

    ``blas_threads`` is None (the library's default) or 1 (see the module's docstring).
    """
    best = None
    for limit in (None, 1):
        with threadpool_limits(limit, user_api="blas"):
            if warm_up:
                fn()
            seconds, out = median_time(fn, repeats)
        if best is None or seconds < best[0]:
            best = (seconds, out, limit)
    return best


def objective_value(coef, intercept, X, y, C, l1_ratio=0.0):
    """The objective J (binary or multinomial) at numpy parameters, in float64."""
    classes = np.unique(y)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    if len(classes) == 2:
        yt = torch.as_tensor((np.asarray(y) == classes[1]).astype(np.float64))
    else:
        yt = torch.as_tensor(np.searchsorted(classes, y))
    coef = torch.as_tensor(np.asarray(coef, dtype=np.float64).reshape(-1, Xt.shape[1]))
    intercept = torch.as_tensor(np.asarray(intercept, dtype=np.float64).reshape(-1))
    with torch.no_grad():
        return float(
            objective(
                coef,
                intercept,
                Xt,
                yt,
                None,
                penalty_strengths(C, l1_ratio, len(y)),
                normalizer=len(y),
            )
        )


def optimum(X, y, C):
    """The best objective scikit-learn's exact solvers reach with tol=1e-12."""
    best = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver in ("newton-cholesky", "lbfgs"):
            sk = LogisticRegression(C=C, solver=solver, tol=1e-12, max_iter=10_000)
            sk.fit(np.asarray(X, dtype=np.float64), y)
            best = min(best, objective_value(sk.coef_, sk.intercept_, X, y, C))
    return best


# ---------------------------------------------------------------- methods
# Each maker takes (max_iter) and returns an object with fit(X, y) and a
# params() giving (coef, intercept) after the fit.


class Estimator:
    def __init__(self, est):
        self.est = est

    def fit(self, X, y):
        self.est.fit(X, y)
        return self

    def params(self):
        return self.est.coef_, self.est.intercept_


class Skorch:
    """skorch with the lesson's module and settings (full batch, SGD momentum)."""

    def __init__(self, max_iter, lr=0.01, momentum=0.9):
        from skorch import NeuralNetBinaryClassifier

        n_features = 2

        class Lin(torch.nn.Module):
            def __init__(self, n_features=n_features):
                super().__init__()
                self.features = torch.nn.Linear(n_features, 1)

            def forward(self, x):
                return self.features(x)[:, 0]

        self.net = NeuralNetBinaryClassifier(
            Lin,
            max_epochs=max_iter,
            lr=lr,
            optimizer=torch.optim.SGD,
            optimizer__momentum=momentum,
            batch_size=-1,
            train_split=None,
            verbose=0,
        )

    def fit(self, X, y):
        self.net.set_params(module__n_features=X.shape[1])
        self.net.fit(np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32))
        return self

    def params(self):
        lin = self.net.module_.features
        return lin.weight.detach().numpy(), lin.bias.detach().numpy()


class LessonLoop:
    """The lesson's program: Linear + Sigmoid, BCELoss, SGD(lr=0.01, momentum=0.9)."""

    def __init__(self, max_iter, lr=0.01, momentum=0.9):
        self.max_iter, self.lr, self.momentum = max_iter, lr, momentum

    def fit(self, X, y):
        gen = torch.Generator().manual_seed(0)
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        y = torch.as_tensor(np.asarray(y, dtype=np.float32))
        self.lin = torch.nn.Linear(X.shape[1], 1)
        with torch.no_grad():
            self.lin.weight.uniform_(-0.1, 0.1, generator=gen)
            self.lin.bias.zero_()
        net = torch.nn.Sequential(self.lin, torch.nn.Sigmoid())
        loss_fn = torch.nn.BCELoss()
        opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=self.momentum)
        for _ in range(self.max_iter):
            y_pred = net(X)
            loss = loss_fn(y_pred.squeeze(), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
        return self

    def params(self):
        return self.lin.weight.detach().numpy(), self.lin.bias.detach().numpy()


def makers(C, n_samples, with_skorch, lesson_settings):
    ms = {
        "TorchLogisticRegression": lambda it: Estimator(TorchLogisticRegression(C=C, max_iter=it)),
        "sklearn lbfgs": lambda it: Estimator(LogisticRegression(C=C, max_iter=it)),
        "SGDClassifier": lambda it: Estimator(
            SGDClassifier(
                loss="log_loss", alpha=1.0 / (C * n_samples), max_iter=it, tol=1e-4, random_state=0
            )
        ),
    }
    if lesson_settings:
        ms.update(
            {
                "TorchLogisticRegression (lesson settings)": lambda it: Estimator(
                    TorchLogisticRegression(
                        lr=0.01, momentum=0.9, C=C, batch_size=None, max_iter=it, tol=0.0
                    )
                ),
                "lesson's torch loop": lambda it: LessonLoop(it),
            }
        )
        if with_skorch:
            ms["skorch (lesson settings)"] = lambda it: Skorch(it)
    return ms


DEFAULT_ITERS = {
    "TorchLogisticRegression": 1000,
    "sklearn lbfgs": 100,
    "SGDClassifier": 1000,
    "TorchLogisticRegression (lesson settings)": 1000,
    "lesson's torch loop": 1000,
    "skorch (lesson settings)": 1000,
}


ANCHORS = ("sklearn lbfgs", "SGDClassifier", "sklearn saga")


def time_to_target(make, X, y, C, target, max_iter=4096, repeats=1):
    """Time of the cheapest fit (max_iter = 1, 2, 4, ...) whose objective <= target."""
    it = 1
    while it <= max_iter:
        seconds, model = median_time(lambda it=it: make(it).fit(X, y), repeats)
        coef, intercept = model.params()
        if objective_value(coef, intercept, X, y, C) <= target:
            return seconds, it
        it *= 2
    return None, None


def bench_case(name, X, y, C, repeats, with_skorch, lesson_settings=False):
    rows = []
    opt = optimum(X, y, C)
    opt_inf = optimum(X, y, np.inf) if lesson_settings else None
    for method, make in makers(C, len(y), with_skorch, lesson_settings).items():
        uses_inf = "lesson" in method or "skorch" in method
        C_m = np.inf if uses_inf else C
        opt_m = opt_inf if uses_inf else opt
        it = DEFAULT_ITERS[method]
        if uses_inf and method.startswith("TorchLogisticRegression"):
            make = lambda it: Estimator(  # noqa: E731
                TorchLogisticRegression(
                    lr=0.01, momentum=0.9, C=np.inf, batch_size=None, max_iter=it, tol=0.0
                )
            )
        make(min(it, 5)).fit(X, y)  # warm-up
        fit = lambda make=make, it=it: make(it).fit(X, y)  # noqa: E731
        if method in ANCHORS:
            seconds, model, blas = anchor_time(fit, repeats)
        else:
            (seconds, model), blas = median_time(fit, repeats), None
        coef, intercept = model.params()
        gap = objective_value(coef, intercept, X, y, C_m) - opt_m
        with threadpool_limits(blas, user_api="blas"):
            t_target, it_target = time_to_target(make, X, y, C_m, opt_m + 1e-3)
        row = {
            "case": name,
            "method": method,
            "C": "inf" if np.isinf(C_m) else C_m,
            "fit_s": seconds,
            "objective_gap": gap,
            "time_to_opt_plus_1e-3_s": t_target,
            "iters_to_opt_plus_1e-3": it_target,
            "blas_threads": blas,
        }
        rows.append(row)
        print(f"  {method:45s} {seconds * 1e3:9.2f} ms  gap {gap: .2e}", flush=True)
    return rows


_MEMORY_SCRIPT = """
import resource, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sktorch_lr import TorchLogisticRegression
X = np.load(sys.argv[1]); y = np.load(sys.argv[2])
make = {
    "TorchLogisticRegression": lambda: TorchLogisticRegression(C=1.0),
    "sklearn lbfgs": lambda: LogisticRegression(C=1.0),
    "SGDClassifier": lambda: SGDClassifier(
        loss="log_loss", alpha=1.0 / len(y), random_state=0, max_iter=int(sys.argv[4])
    ),
}[sys.argv[3]]
import threading, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
make().fit(X[:2000], y[:2000])  # one-time library set-up (thread pools, BLAS buffers)
before = rss()
peak = [before]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.001)
thread = threading.Thread(target=sample, daemon=True)
thread.start()
make().fit(X, y)
done.set()
thread.join()
print(max(peak[0], rss()) - before)
"""


def peak_memory_subprocess(method, X, y, tmp, sgd_max_iter):
    """Peak RSS a fit adds on top of the loaded data, in a fresh process (bytes).

    The data are saved once and loaded by a new interpreter, which first fits
    2,000 rows (so that one-time library set-up is not counted) and whose RSS
    is sampled every millisecond during the full fit; the peak minus the RSS just
    before it is the fit's own (torch's allocator does not report to
    tracemalloc, and ``ru_maxrss`` would include loading the data).
    """
    xp, yp = tmp / "X.npy", tmp / "y.npy"
    if not xp.exists():
        np.save(xp, X)
        np.save(yp, y)
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(xp), str(yp), method, str(sgd_max_iter)],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=root),
    )
    return int(out.stdout.strip().splitlines()[-1])


def bench_large(name, X, y, C, repeats, sgd_max_iter=1000):
    import tempfile

    rows = []
    opt = optimum(X, y, C)
    tmp = Path(tempfile.mkdtemp(prefix="sktorch_lr_bench_"))
    # The floor: numpy's sum of X, one pass at memory speed, timed as the fits are
    # (a median) rather than once.
    read_s, _ = median_time(lambda: float(np.add.reduce(X, axis=None)), 5)
    methods = {
        "TorchLogisticRegression": lambda: TorchLogisticRegression(C=C),
        "sklearn lbfgs": lambda: LogisticRegression(C=C),
        "SGDClassifier": lambda: SGDClassifier(
            loss="log_loss",
            alpha=1.0 / (C * len(y)),
            tol=1e-4,
            random_state=0,
            max_iter=sgd_max_iter,
        ),
    }
    for method, make in methods.items():
        fit = lambda make=make: make().fit(X, y)  # noqa: E731
        if method in ANCHORS:
            seconds, est, blas = anchor_time(fit, repeats)
        else:
            (seconds, est), blas = median_time(fit, repeats), None
        gap = objective_value(est.coef_, est.intercept_, X, y, C) - opt
        mem = peak_memory_subprocess(method, X, y, tmp, sgd_max_iter) / 2**20
        if method == "SGDClassifier" and sgd_max_iter != 1000:
            method = f"SGDClassifier (max_iter={sgd_max_iter})"
        rows.append(
            {
                "case": name,
                "method": method,
                "C": C,
                "fit_s": seconds,
                "objective_gap": gap,
                "peak_extra_memory_mb": mem,
                "one_read_of_X_s": read_s,
                "blas_threads": blas,
            }
        )
        print(f"  {method:45s} {seconds:9.3f} s  gap {gap: .2e}  peak +{mem:.0f} MB", flush=True)
    # One mini-batch epoch (4096 rows per step), against the one-read floor.
    est = TorchLogisticRegression(C=C, batch_size=4096, lr=0.05, random_state=0)
    t1, _ = median_time(lambda: est.set_params(max_iter=1).fit(X, y), repeats)
    t3, _ = median_time(lambda: est.set_params(max_iter=3).fit(X, y), repeats)
    epoch = (t3 - t1) / 2
    rows.append(
        {
            "case": name,
            "method": "TorchLogisticRegression, one mini-batch epoch (batch 4096)",
            "C": C,
            "fit_s": epoch,
            "one_read_of_X_s": read_s,
            "epoch_over_read": epoch / read_s,
        }
    )
    print(
        f"  one mini-batch epoch {epoch:.3f} s = {epoch / read_s:.1f} x one read "
        f"({read_s * 1e3:.3g} ms)"
    )
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return rows


def bench_suite(name, run, repeats):
    from sklearn.utils.estimator_checks import check_estimator

    rows = []
    for method, est in (
        ("TorchLogisticRegression", TorchLogisticRegression()),
        ("sklearn lbfgs", LogisticRegression()),
    ):
        go = lambda est=est: run(est, check_estimator)  # noqa: E731
        if method in ANCHORS:
            seconds, _, blas = anchor_time(go, repeats)
        else:
            (seconds, _), blas = median_time(go, repeats), None
        rows.append({"case": name, "method": method, "fit_s": seconds, "blas_threads": blas})
        print(f"  {method:45s} {seconds:9.3f} s", flush=True)
    return rows


def _check_suite(est, check_estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(est)


def _grid(est, _):
    X, y = load_breast_cancer(return_X_y=True)
    name = type(est).__name__.lower()
    GridSearchCV(
        make_pipeline(StandardScaler(), est), {f"{name}__C": [0.01, 0.1, 1.0, 10.0]}, cv=5
    ).fit(X, y)


def bench_default_fit(name, X, y, repeats):
    """Default fits (C=1) on the data as loaded: epochs, gap and time against lbfgs."""
    rows = []
    opt = optimum(X, y, 1.0)
    for method, make in (
        ("TorchLogisticRegression", lambda: TorchLogisticRegression()),
        ("sklearn lbfgs", lambda: LogisticRegression()),
    ):
        make().fit(X, y)  # warm-up
        fit = lambda make=make: make().fit(X, y)  # noqa: E731
        if method in ANCHORS:
            seconds, est, blas = anchor_time(fit, repeats)
        else:
            (seconds, est), blas = median_time(fit, repeats), None
        gap = objective_value(est.coef_, est.intercept_, X, y, 1.0) - opt
        iters = int(np.max(est.n_iter_))
        rows.append(
            {
                "case": name,
                "method": method,
                "C": 1.0,
                "fit_s": seconds,
                "objective_gap": gap,
                "iterations": iters,
                "blas_threads": blas,
            }
        )
        print(f"  {method:45s} {seconds * 1e3:9.2f} ms  gap {gap: .2e}  {iters} it", flush=True)
    return rows


def bench_l1(repeats):
    """L1 default fits (``l1_ratio=1``, only C set) against saga, scikit-learn's L1
    solver for these objectives (liblinear penalises the intercept): epochs, gap, time.
    The optimum is the best of a tight fit of ours and a tight saga."""
    rows = []
    X_bc, y_bc = load_breast_cancer(return_X_y=True)
    X_wine, y_wine = load_wine(return_X_y=True)
    cases = (
        ("standardised breast cancer", standardised(X_bc), y_bc),
        ("raw wine", X_wine, y_wine),
    )
    for name, X, y in cases:
        for C in (0.01, 1.0, 100.0):
            print(f"L1 (l1_ratio=1), {name}, C={C:g}")

            def J(est, X=X, y=y, C=C):
                return objective_value(est.coef_, est.intercept_, X, y, C, l1_ratio=1.0)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tight = TorchLogisticRegression(C=C, l1_ratio=1.0, tol=1e-10, max_iter=20_000)
                saga = LogisticRegression(
                    C=C, l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=20_000
                )
                opt = min(J(tight.fit(X, y)), J(saga.fit(X, y)))
            for method, make in (
                ("TorchLogisticRegression", lambda C=C: TorchLogisticRegression(C=C, l1_ratio=1.0)),
                ("sklearn saga", lambda C=C: LogisticRegression(C=C, l1_ratio=1.0, solver="saga")),
            ):
                fit = lambda make=make, X=X, y=y: make().fit(X, y)  # noqa: E731
                fit()  # warm-up
                if method in ANCHORS:
                    seconds, est, blas = anchor_time(fit, repeats)
                else:
                    (seconds, est), blas = median_time(fit, repeats), None
                gap = J(est) - opt
                iters = int(np.max(est.n_iter_))
                rows.append(
                    {
                        "case": f"L1 {name} C={C:g}",
                        "method": method,
                        "C": C,
                        "fit_s": seconds,
                        "objective_gap": gap,
                        "iterations": iters,
                        "blas_threads": blas,
                    }
                )
                print(
                    f"  {method:45s} {seconds * 1e3:9.2f} ms  gap {gap: .2e}  {iters} it",
                    flush=True,
                )
    return rows


def _logspace_grid(X, y):
    def run(est, _):
        GridSearchCV(est, {"C": np.logspace(-4, 4, 10)}, cv=5).fit(X, y)

    return run


def bench_cv(name, X, y, repeats, grid_repeats=1):
    """Cross-validating C over np.logspace(-4, 4, 10) x 5 folds, three ways, in one run.

    LogisticRegressionCV (lbfgs, its defaults), TorchLogisticRegressionCV (one
    batch), and GridSearchCV over TorchLogisticRegression (50 separate fits).
    Each row notes the C it chose; the times include the refit.
    """
    methods = (
        (
            "sklearn LogisticRegressionCV",
            lambda: LogisticRegressionCV(
                l1_ratios=(0.0,), use_legacy_attributes=False, scoring=None
            ).fit(X, y),
            repeats,
        ),
        ("TorchLogisticRegressionCV", lambda: TorchLogisticRegressionCV().fit(X, y), repeats),
        (
            "GridSearchCV(TorchLogisticRegression)",
            lambda: GridSearchCV(
                TorchLogisticRegression(), {"C": np.logspace(-4, 4, 10)}, cv=5
            ).fit(X, y),
            grid_repeats,
        ),
    )
    rows = []
    for method, run, n in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if method.startswith("sklearn"):
                seconds, est, blas = anchor_time(run, n, warm_up=n > 1)
            else:
                if n > 1:
                    run()  # warm-up
                (seconds, est), blas = median_time(run, n), None
        C = float(np.ravel(getattr(est, "C_", None) or est.best_params_["C"])[0])
        rows.append(
            {
                "case": name,
                "method": method,
                "fit_s": seconds,
                "note": f"chose C={C:.3g}",
                "blas_threads": blas,
            }
        )
        print(f"  {method:45s} {seconds:9.3f} s  C={C:.3g}", flush=True)
    ours = rows[1]["fit_s"]
    rows[1]["note"] += (
        f"; {ours / rows[0]['fit_s']:.2f} x LogisticRegressionCV, "
        f"{rows[2]['fit_s'] / ours:.1f} x faster than GridSearchCV"
    )
    return rows


def bench_many_classes(repeats):
    """2,000 x 20 with 1,000 classes: fit time, gap, and the curvature's share of it."""
    from sktorch_lr import _solver

    rng = np.random.RandomState(0)
    n, d, K = 2000, 20, 1000
    X = rng.randn(n, d)
    y = np.argmax(X @ rng.randn(K, d).T + rng.gumbel(size=(n, K)), axis=1)
    y[:K] = np.arange(K)  # every class present
    opt = objective_value(
        *(lambda e: (e.coef_, e.intercept_))(
            LogisticRegression(tol=1e-10, max_iter=10_000).fit(X, y)
        ),
        X,
        y,
        1.0,
    )
    rows = []
    spent = [0.0]
    measure = _solver.Problem.measure

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return measure(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    for method, make in (
        ("TorchLogisticRegression", lambda: TorchLogisticRegression()),
        ("sklearn lbfgs", lambda: LogisticRegression()),
    ):
        spent[0] = 0.0
        _solver.Problem.measure = timed
        fit = lambda make=make: make().fit(X, y)  # noqa: E731
        try:
            if method in ANCHORS:
                seconds, est, blas = anchor_time(fit, repeats)
            else:
                (seconds, est), blas = median_time(fit, repeats), None
        finally:
            _solver.Problem.measure = measure
        gap = objective_value(est.coef_, est.intercept_, X, y, 1.0) - opt
        row = {
            "case": "2000x20, 1000 classes",
            "method": method,
            "C": 1.0,
            "fit_s": seconds,
            "objective_gap": gap,
            "iterations": int(np.max(est.n_iter_)),
            "blas_threads": blas,
        }
        if method.startswith("Torch"):
            row["curvature_share"] = spent[0] / repeats / seconds
        rows.append(row)
        share = f"  curvature {row['curvature_share']:.0%}" if "curvature_share" in row else ""
        print(f"  {method:45s} {seconds:9.3f} s  gap {gap: .2e}{share}", flush=True)
    return rows


_BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end: pass"


def bench_busy(repeats):
    """Small fits with one busy process beside them, against the same fits on a quiet machine."""
    rows = []
    X_bc, y_bc = load_breast_cancer(return_X_y=True)
    cases = {
        "lesson 200x2, lesson settings": (
            make_lesson_data(),
            lambda: TorchLogisticRegression(
                lr=0.01, momentum=0.9, C=np.inf, batch_size=None, max_iter=1000, tol=0.0
            ),
        ),
        "breast cancer, defaults": (
            (standardised(X_bc), y_bc),
            lambda: TorchLogisticRegression(),
        ),
    }
    Xl, yl = make_lesson_data()

    def bare_torch_loop():
        """The same kind of work without the package: 300 SGD steps on one thread."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            Xt = torch.as_tensor(Xl, dtype=torch.float64)
            yt = torch.as_tensor(yl, dtype=torch.float64)
            w = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
            b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
            for _ in range(300):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    torch.nn.functional.linear(Xt, w, b)[:, 0], yt
                )
                loss.backward()
                with torch.no_grad():
                    w -= 0.01 * w.grad
                    b -= 0.01 * b.grad
                w.grad = b.grad = None
        finally:
            torch.set_num_threads(threads)

    def pure_python_loop():
        return sum(i * i for i in range(300_000))

    cases["bare torch loop, 1 thread (no package code)"] = ((None, None), None)
    cases["pure Python loop"] = ((None, None), None)
    runners = {
        "bare torch loop, 1 thread (no package code)": bare_torch_loop,
        "pure Python loop": pure_python_loop,
    }
    for name, ((X, y), make) in cases.items():
        run = runners.get(name) or (lambda make=make, X=X, y=y: make().fit(X, y))
        run()
        quiet, _ = median_time(run, repeats)
        busy_proc = subprocess.Popen([sys.executable, "-c", _BUSY])
        try:
            time.sleep(0.5)
            busy, _ = median_time(run, repeats)
        finally:
            busy_proc.kill()
            busy_proc.wait()
        rows.append(
            {
                "case": "one busy process beside",
                "method": name if name in runners else f"TorchLogisticRegression, {name}",
                "fit_s": busy,
                "quiet_s": quiet,
                "busy_over_quiet": busy / quiet,
            }
        )
        print(
            f"  {name:45s} quiet {quiet * 1e3:8.2f} ms  busy {busy * 1e3:8.2f} ms "
            f"({busy / quiet:.2f}x)",
            flush=True,
        )
    return rows


def bench_inference(repeats):
    """Fit + standard errors on 200,000 x 50: GradientInspector.summary() against statsmodels."""
    import statsmodels.api as sm

    from sktorch_lr.inspection import GradientInspector

    rng = np.random.default_rng(0)
    n, d = 200_000, 50
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ (rng.normal(size=d) * 0.3))))).astype(int)

    def ours():
        est = TorchLogisticRegression(C=np.inf).fit(X, y)
        return GradientInspector(est, X, y).summary()[["coef", "std_err", "p_value"]].to_numpy()

    def theirs():
        res = sm.Logit(y, sm.add_constant(X, prepend=False)).fit(disp=0)
        return np.column_stack([res.params, res.bse, res.pvalues])

    ours()  # warm-up (torch.func, statsmodels imports)
    t_ours, se_ours = median_time(ours, repeats)
    t_sm, se_sm, blas = anchor_time(theirs, repeats)
    # Relative differences of coefficients, std errors and p-values (the largest).
    diff = float(np.max(np.abs(se_ours - se_sm) / np.maximum(np.abs(se_sm), 1e-300)))
    print(
        f"  fit + summary {t_ours:.2f} s; statsmodels Logit fit + bse {t_sm:.2f} s "
        f"({t_sm / t_ours:.1f}x); coefficients, std errors and p-values agree to {diff:.1e}"
    )
    return [
        {
            "case": "200k x 50, fit + std errors",
            "method": "TorchLogisticRegression + GradientInspector.summary()",
            "fit_s": t_ours,
        },
        {
            "case": "200k x 50, fit + std errors",
            "method": "statsmodels Logit fit + bse",
            "fit_s": t_sm,
            "objective_gap": diff,
            "blas_threads": blas,
        },
    ]


_DASK_SCRIPT = """
import sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import dask.array as da
from distributed import Client, LocalCluster
from sklearn.linear_model import LogisticRegression
sys.path.insert(0, sys.argv[1])
from sktorch_lr import TorchLogisticRegression
from benchmarks.run import objective_value, optimum


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    n, d = 400_000, 50
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ (rng.normal(size=d) * 0.3))))).astype(int)
    opt = optimum(X, y, 1.0)

    def gap(m):
        return objective_value(m.coef_, m.intercept_, X, y, 1.0) - opt

    rows = []
    from threadpoolctl import threadpool_limits
    best = None
    for limit in (None, 1):  # the anchor at its faster BLAS setting
        with threadpool_limits(limit, user_api="blas"):
            t, sk = timed(lambda: LogisticRegression().fit(X, y))
        if best is None or t < best[0]:
            best = (t, sk, "" if limit is None else "1 BLAS thread")
    t, sk, note = best
    rows.append(("sklearn lbfgs, in memory", t, gap(sk), note))
    for workers in (1, 2):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address="127.0.0.1:0",
        )
        with cluster, Client(cluster):
            Xd = da.from_array(X, chunks=(n // 8, d)).persist()
            yd = da.from_array(y, chunks=n // 8).persist()
            TorchLogisticRegression(max_iter=2, tol=0).fit(Xd, yd)  # torch in the workers
            read = min(timed(lambda: float(Xd.sum().compute()))[0] for _ in range(3))
            t_epochs, _ = timed(
                lambda: TorchLogisticRegression(max_iter=5, tol=0, lr=0.1).fit(Xd, yd)
            )
            epoch = t_epochs / 6  # 5 epochs and the first evaluation
            for tol in (1e-4, 1e-6):
                t, est = timed(lambda: TorchLogisticRegression(tol=tol).fit(Xd, yd))
                note = (
                    f"{est.n_iter_} epochs; one epoch {epoch * 1e3:.0f} ms = "
                    f"{epoch / read:.1f} x one read of X ({read * 1e3:.0f} ms)"
                )
                name = f"TorchLogisticRegression(tol={tol:g}) on dask, {workers} worker(s)"
                rows.append((name, t, gap(est), note))
            if workers == 2:
                from dask_ml.linear_model import LogisticRegression as DaskLR

                for solver in sys.argv[2].split(","):
                    # dask-glm minimises sum of losses + ||beta||^2 / (2 C): C S J, same C.
                    t, m = timed(lambda: DaskLR(solver=solver, C=1.0).fit(Xd, yd))
                    name = f"dask-ml LogisticRegression({solver!r}), 2 workers"
                    rows.append((name, t, gap(m), ""))
    for r in rows:
        print("ROW", repr(r))


if __name__ == "__main__":
    main()
"""


def bench_dask(solvers):
    """400,000 x 50 float64 on local Dask workers against dask-ml and in-memory lbfgs."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", _DASK_SCRIPT, root, ",".join(solvers)],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=root),
    )
    rows = []
    for line in out.stdout.splitlines():
        if line.startswith("ROW "):
            method, seconds, gap, note = eval(line[4:])  # noqa: S307 - our own subprocess
            print(f"  {method:50s} {seconds:8.2f} s  gap {gap: .2e}  {note}", flush=True)
            rows.append(
                {
                    "case": "400k x 50 on Dask",
                    "method": method,
                    "C": 1.0,
                    "fit_s": seconds,
                    "objective_gap": gap,
                    "note": note,
                }
            )
    return rows


def bench_import(repeats):
    base = "import torch, sklearn.linear_model"
    ours = (
        "import torch, sklearn.linear_model; from sktorch_lr import TorchLogisticRegression; "
        "from sktorch_lr.datasets import make_lesson_data; "
        "TorchLogisticRegression().fit(*make_lesson_data())"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root)

    def run(code):
        return lambda: subprocess.run([sys.executable, "-c", code], check=True, env=env)

    t_base, _ = median_time(run(base), repeats)
    t_ours, _ = median_time(run(ours), repeats)
    print(f"  new process: torch + sklearn {t_base:.2f} s; + sktorch_lr, lesson fit {t_ours:.2f} s")
    return [
        {"case": "new process", "method": "import torch, sklearn", "fit_s": t_base},
        {"case": "new process", "method": "+ import sktorch_lr, fit lesson data", "fit_s": t_ours},
    ]


def bench_gpu(repeats):
    n = 10_000_000
    gen = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(100, device="cuda", generator=gen)
    X = torch.randn(n, 100, device="cuda", generator=gen)
    y = (X @ w + torch.randn(n, device="cuda", generator=gen) * 4 > 0).float()
    torch.cuda.synchronize()
    seconds, est = median_time(
        lambda: (TorchLogisticRegression(device="cuda").fit(X, y), torch.cuda.synchronize())[0],
        repeats,
    )
    Xc, yc = X.cpu().numpy(), y.cpu().numpy()
    sk_s, sk = median_time(lambda: LogisticRegression().fit(Xc, yc), 1)
    print(f"  10M x 100 on the GPU: {seconds:.2f} s; sklearn lbfgs on the CPU: {sk_s:.2f} s")
    return [
        {"case": "10M x 100 float32", "method": "TorchLogisticRegression (cuda)", "fit_s": seconds},
        {"case": "10M x 100 float32", "method": "sklearn lbfgs (CPU)", "fit_s": sk_s},
    ]


# ------------------------------------------------------------------- main


def standardised(X):
    return StandardScaler().fit_transform(X)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, fewer repeats")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--dask-ml-solvers",
        default="newton,lbfgs,proximal_grad,gradient_descent",
        help="dask-ml solvers to compare with (admm takes minutes here: add it to include it)",
    )
    parser.add_argument(
        "--only",
        choices=["cv", "l1"],
        help="run one group of cases (written to results-<group>.*)",
    )
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7
    try:
        import skorch  # noqa: F401

        with_skorch = True
    except ImportError:
        with_skorch = False
        print("skorch is not installed: its rows are skipped (pip install skorch)")

    rows = []
    if args.only == "cv":
        rows += cv_cases(repeats)
        write(rows, Path(args.out), args.quick, name="results-cv")
        return
    if args.only == "l1":
        rows += bench_l1(repeats)
        write(rows, Path(args.out), args.quick, name="results-l1")
        return
    print("lesson data 200 x 2")
    X, y = make_lesson_data()
    rows += bench_case("lesson 200x2", X, y, 1.0, repeats, with_skorch, lesson_settings=True)
    print("breast cancer 569 x 30, standardised")
    X, y = load_breast_cancer(return_X_y=True)
    rows += bench_case("breast cancer 569x30", standardised(X), y, 1.0, repeats, False)
    print("GridSearchCV: 5 folds x 4 C, scaler + model, breast cancer")
    rows += bench_suite("grid search", _grid, 1 if args.quick else 3)
    for name, loader in (("breast cancer", load_breast_cancer), ("digits", load_digits)):
        print(f"GridSearchCV: 5 folds x C in logspace(-4, 4, 10), standardised {name}")
        X, y = loader(return_X_y=True)
        rows += bench_suite(
            f"grid search logspace, {name}",
            _logspace_grid(standardised(X), y),
            1 if args.quick else 3,
        )
    for name, loader in (
        ("breast cancer", load_breast_cancer),
        ("wine", load_wine),
        ("digits", load_digits),
    ):
        print(f"raw {name}: default fits")
        X, y = loader(return_X_y=True)
        rows += bench_default_fit(f"raw {name}", X, y, repeats)
    rows += bench_l1(repeats)
    print("2,000 x 20, 1,000 classes")
    rows += bench_many_classes(1 if args.quick else 3)
    rows += cv_cases(repeats)
    print("busy machine: one busy process beside the fit")
    rows += bench_busy(repeats)
    print("100k x 20, standardised float32")
    X, y = make_classification(100_000, 20, n_informative=10, random_state=0)
    rows += bench_large("100k x 20 float32", standardised(X).astype(np.float32), y, 1.0, repeats)
    if not args.quick:
        print("check_estimator suite")
        rows += bench_suite("check_estimator suite", _check_suite, 1)
        print("1M x 100, standardised float32")
        X, y = make_classification(1_000_000, 100, n_informative=20, random_state=0)
        X = standardised(X).astype(np.float32)
        # SGDClassifier's default max_iter takes ~2 minutes here: 10 epochs show its pace.
        rows += bench_large("1M x 100 float32", X, y, 1.0, 3, sgd_max_iter=10)
        del X
        print("Dask: 400,000 x 50 on local workers")
        rows += bench_dask(args.dask_ml_solvers.split(","))
        print("statistical inference: 200,000 x 50")
        rows += bench_inference(3)
        print("import + first fit in a new process")
        rows += bench_import(5)
        if torch.cuda.is_available():
            print("GPU")
            rows += bench_gpu(3)
    write(rows, Path(args.out), args.quick)


def cv_cases(repeats):
    rows = []
    cases = (
        ("breast cancer", lambda: load_breast_cancer(return_X_y=True)),
        ("digits", lambda: load_digits(return_X_y=True)),
        ("50,000 x 50", lambda: make_classification(50_000, 50, n_informative=20, random_state=0)),
    )
    for name, load in cases:
        print(f"cross-validation of C: logspace(-4, 4, 10) x 5 folds, standardised {name}")
        X, y = load()
        rows += bench_cv(f"CV of C, {name}", standardised(X), y, min(repeats, 3))
    return rows


def write(rows, out, quick, name="results"):
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    (out / f"{name}.json").write_text(
        json.dumps({"machine": info, "quick": quick, "rows": rows}, indent=1)
    )
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads), scikit-learn {info['sklearn']}, "
        f"Python {info['python']}, GPU: {info['gpu'] or 'none'}; {info['date']}"
        + (" (quick mode)" if quick else ""),
        "",
        "| case | method | C | fit (median) | objective - optimum | time to optimum + 1e-3 "
        "(or iterations) | peak extra memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        fit = r["fit_s"]
        fit_s = f"{fit * 1e3:.2f} ms" if fit < 1 else f"{fit:.2f} s"
        gap = f"{r['objective_gap']:.1e}" if "objective_gap" in r else ""
        t = r.get("time_to_opt_plus_1e-3_s")
        t_s = (
            ""
            if "time_to_opt_plus_1e-3_s" not in r
            else (
                "not reached"
                if t is None
                else f"{t * 1e3:.2f} ms ({r['iters_to_opt_plus_1e-3']} it)"
            )
        )
        mem = f"{r['peak_extra_memory_mb']:.0f} MB" if "peak_extra_memory_mb" in r else ""
        if "iterations" in r:
            t_s = f"{r['iterations']} it" + (
                f", curvature {r['curvature_share']:.0%} of the fit"
                if "curvature_share" in r
                else ""
            )
        if "note" in r and r["note"]:
            t_s = r["note"]
        if "busy_over_quiet" in r:
            gap = f"{r['busy_over_quiet']:.2f} x its quiet time ({r['quiet_s'] * 1e3:.1f} ms)"
        if "epoch_over_read" in r:
            gap = (
                f"{r['epoch_over_read']:.1f} x one read of X ({r['one_read_of_X_s'] * 1e3:.3g} ms)"
            )
        method = r["method"] + (" [1 BLAS thread]" if r.get("blas_threads") == 1 else "")
        lines.append(
            f"| {r['case']} | {method} | {r.get('C', '')} | {fit_s} | {gap} | {t_s} | {mem} |"
        )
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / f"{name}.png", info)
    print(f"\nwrote {out / name}.md, .json and .png")


def plot(rows, path, info):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [
        ("lesson 200x2", "sklearn lbfgs"),
        ("breast cancer 569x30", "sklearn lbfgs"),
        ("grid search", "sklearn lbfgs"),
        ("grid search logspace, breast cancer", "sklearn lbfgs"),
        ("grid search logspace, digits", "sklearn lbfgs"),
        ("raw breast cancer", "sklearn lbfgs"),
        ("raw wine", "sklearn lbfgs"),
        ("raw digits", "sklearn lbfgs"),
        ("2000x20, 1000 classes", "sklearn lbfgs"),
        ("check_estimator suite", "sklearn lbfgs"),
        ("100k x 20 float32", "sklearn lbfgs"),
        ("1M x 100 float32", "sklearn lbfgs"),
    ]
    labels, ratios = [], []
    for case, ref in cases:
        times = {r["method"]: r["fit_s"] for r in rows if r["case"] == case}
        if "TorchLogisticRegression" in times and ref in times:
            labels.append(case)
            ratios.append(times["TorchLogisticRegression"] / times[ref])
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    bars = ax.barh(labels, ratios, color="C0")
    ax.axvline(1.0, color="k", lw=1, label="sklearn lbfgs = 1")
    ax.bar_label(bars, fmt="%.2fx", padding=3)
    ax.set_xlabel("TorchLogisticRegression fit time / sklearn LogisticRegression (lbfgs) fit time")
    ax.set_title(f"Fit time relative to sklearn lbfgs ({info['cores']} cores, {info['cpu'][:40]})")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
