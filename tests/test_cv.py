"""TorchLogisticRegressionCV: LogisticRegressionCV's answers, every fold and C in one batch."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import load_wine, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, PredefinedSplit, StratifiedKFold
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression, TorchLogisticRegressionCV
from sktorch_lr._batch import BatchProblem, solve_batch

from .conftest import objective_value

TIGHT = dict(tol=1e-10)
SKLEARN_TIGHT = dict(solver="newton-cholesky", tol=1e-12, max_iter=10_000)


def _sklearn_cv(X, y, sample_weight=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegressionCV(
            use_legacy_attributes=False, l1_ratios=(0.0,), **SKLEARN_TIGHT, **kwargs
        ).fit(X, y, sample_weight=sample_weight)


def _assert_same_cv(ours, ref, rtol=1e-4):
    assert ours.C_ == ref.C_
    np.testing.assert_array_equal(ours.Cs_, ref.Cs_)
    np.testing.assert_allclose(ours.scores_, ref.scores_, rtol=rtol, atol=1e-8)
    scale = np.maximum(1.0, np.abs(ref.coefs_paths_))
    assert np.max(np.abs(ours.coefs_paths_ - ref.coefs_paths_) / scale) < rtol
    assert ours.coefs_paths_.shape == ref.coefs_paths_.shape
    assert ours.scores_.shape == ref.scores_.shape == ours.n_iter_.shape


def _wine():
    X, y = load_wine(return_X_y=True)
    return X, y


@pytest.mark.parametrize("scoring", [None, "neg_log_loss"])
def test_matches_logistic_regression_cv_binary(breast_cancer, scoring):
    X, y = breast_cancer
    ours = TorchLogisticRegressionCV(scoring=scoring, **TIGHT).fit(X, y)
    ref = _sklearn_cv(X, y, scoring=scoring)
    _assert_same_cv(ours, ref)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("raw", [False, True])
def test_matches_logistic_regression_cv_multinomial(iris, raw):
    X, y = iris
    if not raw:
        X = StandardScaler().fit_transform(X)
    ours = TorchLogisticRegressionCV(scoring="neg_log_loss", **TIGHT).fit(X, y)
    _assert_same_cv(ours, _sklearn_cv(X, y, scoring="neg_log_loss"))


def test_raw_wine_matches():
    X, y = _wine()
    _assert_same_cv(TorchLogisticRegressionCV(**TIGHT).fit(X, y), _sklearn_cv(X, y))


@pytest.mark.slow
def test_digits_matches(digits):
    X, y = digits
    _assert_same_cv(TorchLogisticRegressionCV(**TIGHT).fit(X, y), _sklearn_cv(X, y))


@pytest.mark.slow
def test_digits_standardised_matches(digits):
    X, y = digits
    X = StandardScaler().fit_transform(X)
    _assert_same_cv(TorchLogisticRegressionCV(**TIGHT).fit(X, y), _sklearn_cv(X, y))


def test_same_choice_as_grid_search_over_the_estimator(breast_cancer):
    X, y = breast_cancer
    Cs = np.logspace(-3, 3, 7)
    cv = StratifiedKFold(4)
    ours = TorchLogisticRegressionCV(Cs=Cs, cv=cv, scoring="neg_log_loss").fit(X, y)
    search = GridSearchCV(TorchLogisticRegression(), {"C": Cs}, cv=cv, scoring="neg_log_loss").fit(
        X, y
    )
    assert ours.C_ == search.best_params_["C"]
    np.testing.assert_allclose(
        ours.scores_[:, 0].mean(0), search.cv_results_["mean_test_score"], rtol=1e-5
    )
    # The refit (warm-started from the folds' mean) and the search's (from zero) stop at
    # different points within tol of the same optimum: the same objective.
    C = ours.C_
    got = objective_value(ours.coef_, ours.intercept_, X, y, C=C)
    best = search.best_estimator_
    assert abs(got - objective_value(best.coef_, best.intercept_, X, y, C=C)) < 1e-7


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris", "wine_raw", "digits_raw"])
def test_every_batched_problem_reaches_the_single_fit_optimum(dataset, request):
    """Dense metrics (binary, iris, wine) and the block metric's conjugate steps (digits)."""
    if dataset == "wine_raw":
        X, y = _wine()
    elif dataset == "digits_raw":
        X, y = request.getfixturevalue("digits")
        X, y = X[:500], y[:500]
    else:
        X, y = request.getfixturevalue(dataset)
    Cs = np.logspace(-4, 4, 5)
    cv = list(KFold(3, shuffle=True, random_state=0).split(X, y))
    ours = TorchLogisticRegressionCV(Cs=Cs, cv=cv).fit(X, y)
    for f, (train, _) in enumerate(cv):
        for c, C in enumerate(Cs):
            single = TorchLogisticRegression(C=C, tol=1e-8).fit(X[train], y[train])
            packed = ours.coefs_paths_[f, 0, c]
            coef, intercept = packed[:, :-1], packed[:, -1]
            got = objective_value(coef, intercept, X[train], y[train], C=C)
            best = objective_value(single.coef_, single.intercept_, X[train], y[train], C=C)
            assert got - best < 1e-7, (f, C, got - best)


@pytest.mark.parametrize("seed", [217, 219, 222])
def test_float32_batch_goes_on_in_float64_sums_where_float32_stalls(seed):
    # Drawn float32 problems (features up to 1e6, spreads over six decades, weights)
    # on which float32 sums stalled problems of the batch above tol (a warning, and a
    # gap up to 0.25 on seed 219): like the single solver, the batch goes on with
    # float64 sums, and every problem reaches the tight float64 single fit's optimum.
    from .test_convergence import _random_problem

    case = _random_problem(seed)
    assert case["dtype"] == "float32" and case["fit_intercept"]
    X, y, sw = case["X"], case["y"], case["sample_weight"]
    Cs = [1e-4, 1e-1, 1e2, 1e4]
    cv = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = TorchLogisticRegressionCV(
            Cs=Cs, cv=cv, fit_intercept=case["fit_intercept"], use_legacy_attributes=False
        ).fit(X.astype(np.float32), y, sample_weight=sw)
    assert ours.coef_.dtype == np.float32
    for f, (train, _) in enumerate(cv):
        w = None if sw is None else sw[train]
        for c, C in enumerate(Cs):
            single = TorchLogisticRegression(C=C, tol=1e-8, max_iter=5000)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # float64's floor, 2e-8
                single.fit(X[train], y[train], sample_weight=w)
            packed = ours.coefs_paths_[f, 0, c]
            got = objective_value(
                packed[:, :-1], packed[:, -1], X[train], y[train], C=C, sample_weight=w
            )
            best = objective_value(
                single.coef_, single.intercept_, X[train], y[train], C=C, sample_weight=w
            )
            assert got - best < 1e-4, (f, C, got - best)


def test_dense_multinomial_batch_measures_on_the_schedule_budget():
    # Random problem 304: 2,500 x 15, 12 classes, columns 2,000 spreads from zero. Its
    # dense metric (192 parameters) costs about 8 epochs of the batch to measure; in
    # Newton's mode, measured after nearly every epoch, the batch took 11 s and some
    # problems ran into max_iter=1000. On the schedule's budget: at most 100 epochs.
    from .test_convergence import _random_problem

    case = _random_problem(304)
    X, y = case["X"], case["y"]
    assert len(np.unique(y)) == 12 and case["dtype"] == "float64"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = TorchLogisticRegressionCV(cv=3).fit(X, y)
    assert ours.n_iter_.max() <= 100
    folds = list(StratifiedKFold(3).split(X, y))
    train = folds[0][0]
    for c in (0, 9):
        C = ours.Cs_[c]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # float64's floor, 2e-8
            single = TorchLogisticRegression(C=C, tol=1e-8).fit(X[train], y[train])
        packed = ours.coefs_paths_[0, 0, c]
        got = objective_value(packed[:, :-1], packed[:, -1], X[train], y[train], C=C)
        best = objective_value(single.coef_, single.intercept_, X[train], y[train], C=C)
        assert got - best < 1e-6, (C, got - best)


def test_small_batches_measure_newtons_hessian_on_every_row():
    # 500 x 3, four classes, no intercept, balanced class weights (the slow test's drawn
    # problem 9): measured on 384 of the 500 rows, the dense metric missed the few rows
    # near the boundary that carry the curvature at large C. Newton's steps in it lost
    # 3% of the decrement an epoch, and 4 of 30 problems stalled short of tol=1e-10
    # (one after 273 epochs, where a single fit takes 13).
    X, y = make_classification(
        500, 3, n_informative=3, n_redundant=0, n_classes=4, n_clusters_per_class=1,
        class_sep=2.0, random_state=9,
    )  # fmt: skip
    sample_weight = np.random.RandomState(0).uniform(0.2, 3.0, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = TorchLogisticRegressionCV(
            Cs=[1e2, 1e3, 1e4], cv=3, tol=1e-10, class_weight="balanced", fit_intercept=False
        ).fit(X, y, sample_weight=sample_weight)
    assert ours.n_iter_.max() <= 40


def test_sample_weight_is_routed_to_training_and_scoring(breast_cancer):
    X, y = breast_cancer
    sw = np.random.RandomState(0).randint(1, 4, size=len(y)).astype(float)
    ours = TorchLogisticRegressionCV(**TIGHT).fit(X, y, sample_weight=sw)
    ref = _sklearn_cv(X, y, sample_weight=sw)
    _assert_same_cv(ours, ref)


def test_balanced_class_weight_matches(breast_cancer):
    X, y = breast_cancer
    ours = TorchLogisticRegressionCV(class_weight="balanced", **TIGHT).fit(X, y)
    _assert_same_cv(ours, _sklearn_cv(X, y, class_weight="balanced"))


@pytest.mark.parametrize("container", ["csr", "tensor", "float32"])
def test_sparse_tensor_and_float32_input(breast_cancer, container):
    X, y = breast_cancer
    dense = TorchLogisticRegressionCV(Cs=5, **TIGHT).fit(X, y)
    if container == "csr":
        Xc = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X))
        dense = TorchLogisticRegressionCV(Cs=5, **TIGHT).fit(Xc.toarray(), y)
    elif container == "tensor":
        Xc = torch.as_tensor(X)
    else:
        Xc = X.astype(np.float32)
    got = TorchLogisticRegressionCV(Cs=5, tol=1e-6 if container == "float32" else 1e-10)
    got.fit(Xc, y)
    assert got.C_ == dense.C_
    rtol = 1e-3 if container == "float32" else 1e-6
    scale = np.maximum(1.0, np.abs(dense.coefs_paths_))
    assert np.max(np.abs(got.coefs_paths_ - dense.coefs_paths_) / scale) < rtol
    if container == "float32":
        assert got.module_.linear.weight.dtype == torch.float32


def test_any_splitter_and_scorer(iris):
    X, y = iris
    # a held-out fold without class 2: the scorer is told every class
    test_fold = np.where(y == 2, 0, np.arange(len(y)) % 2)
    cv = PredefinedSplit(test_fold)
    ours = TorchLogisticRegressionCV(Cs=4, cv=cv, scoring="neg_log_loss").fit(X, y)
    assert np.isfinite(ours.scores_).all()
    auc = make_scorer(roc_auc_score, response_method="predict_proba", multi_class="ovr")
    with_auc = TorchLogisticRegressionCV(Cs=4, cv=3, scoring=auc).fit(X, y)
    assert with_auc.scores_.shape == (3, 1, 4)
    callable_scorer = TorchLogisticRegressionCV(
        Cs=4, cv=3, scoring=lambda est, X_, y_: -np.abs(est.coef_).sum()
    ).fit(X, y)
    assert callable_scorer.C_ == callable_scorer.Cs_[0]  # the strongest penalty wins


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_random_problems_match_logistic_regression_cv(seed):
    # Drawn problems: 2-4 classes, raw scales and offsets, sample and class weights,
    # with or without an intercept, several scorers and splitters, dense, sparse and
    # tensor input; LogisticRegressionCV with a tight newton-cholesky as the reference.
    from sklearn.model_selection import ShuffleSplit

    r = np.random.RandomState(seed)
    n, d, K = int(r.choice([80, 200, 500])), int(r.choice([3, 8, 20])), int(r.choice([2, 3, 4]))
    X, y = make_classification(
        n, d, n_informative=min(d, 3), n_redundant=0, n_classes=K, n_clusters_per_class=1,
        class_sep=float(r.choice([0.5, 1.0, 2.0])), random_state=seed,
    )  # fmt: skip
    X = X * r.choice([1.0, 100.0]) + r.choice([0.0, 50.0])
    sample_weight = r.uniform(0.2, 3.0, n) if r.rand() < 0.5 else None
    scorers = [None, "neg_log_loss"] + (["f1_macro"] if K > 2 else [])
    kwargs = dict(
        Cs=int(r.choice([4, 10])),
        cv=[3, KFold(4, shuffle=True, random_state=seed), ShuffleSplit(3, random_state=seed)][
            seed % 3
        ],
        scoring=scorers[seed % len(scorers)],
        class_weight=[None, "balanced"][r.randint(2)],
        fit_intercept=bool(r.rand() < 0.75),
    )
    container = ["dense", "sparse", "tensor"][(seed // 3) % 3]
    X_in = {"dense": X, "sparse": sp.csr_matrix(X), "tensor": torch.as_tensor(X)}[container]
    ours = TorchLogisticRegressionCV(**TIGHT, **kwargs).fit(X_in, y, sample_weight=sample_weight)
    ref = _sklearn_cv(X, y, sample_weight=sample_weight, **kwargs)
    np.testing.assert_allclose(ours.scores_, ref.scores_, rtol=1e-4, atol=1e-4)
    mean = ref.scores_.mean(0).ravel()
    if ours.C_ != ref.C_:  # only between scores that tie
        assert np.sort(mean)[-1] - mean[np.argmax(ours.Cs_ == ours.C_)] < 1e-9
    np.testing.assert_allclose(
        ours.coef_, ref.coef_, rtol=1e-3, atol=1e-3 * np.abs(ref.coef_).max()
    )


@pytest.mark.parametrize("scoring", ["f1_macro", "f1", "precision_weighted"])
def test_label_scorers_on_binary_targets(breast_cancer, scoring):
    # scikit-learn 1.9's LogisticRegressionCV raises a TypeError for "f1_macro" on
    # binary targets (pos_label passed twice); here each fold's score is the
    # scorer's own value for the model of that fold and C.
    # String labels: the positive class is the last one, "yes", as LogisticRegressionCV
    # tells the scorer (a plain "f1" scorer would look for the label 1).
    from sklearn.metrics import f1_score, get_scorer

    X, y = breast_cancer
    labels = np.where(y == 1, "yes", "no")
    ours = TorchLogisticRegressionCV(Cs=3, cv=3, scoring=scoring).fit(X, labels)
    scorer = make_scorer(f1_score, pos_label="yes") if scoring == "f1" else get_scorer(scoring)
    folds = list(StratifiedKFold(3).split(X, labels))
    for f, (train, test) in enumerate(folds):
        for c, C in enumerate(ours.Cs_):
            est = TorchLogisticRegression(C=C, tol=1e-8).fit(X[train], labels[train])
            expected = scorer(est, X[test], labels[test])
            assert ours.scores_[f, 0, c] == pytest.approx(expected, abs=1e-12)


def test_refit_false_averages_the_folds_best(breast_cancer):
    X, y = breast_cancer
    ours = TorchLogisticRegressionCV(refit=False, **TIGHT).fit(X, y)
    ref = _sklearn_cv(X, y, refit=False)
    assert ours.C_ == pytest.approx(ref.C_)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-4, atol=1e-6)
    assert ours.refit_n_iter_ == 0


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
def test_legacy_attributes_have_sklearn_shapes(dataset, request):
    X, y = request.getfixturevalue(dataset)
    ours = TorchLogisticRegressionCV(Cs=3, use_legacy_attributes=True).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegressionCV(Cs=3, use_legacy_attributes=True, scoring=None).fit(X, y)
    assert ours.scores_.keys() == ref.scores_.keys()
    assert ours.coefs_paths_.keys() == ref.coefs_paths_.keys()
    for key in ref.scores_:
        assert ours.scores_[key].shape == ref.scores_[key].shape
        assert ours.coefs_paths_[key].shape == ref.coefs_paths_[key].shape
    assert ours.n_iter_.shape == ref.n_iter_.shape
    assert ours.C_.shape == ref.C_.shape


def test_elastic_net_problems(breast_cancer):
    X, y = breast_cancer
    Cs = [0.05, 0.5]
    ours = TorchLogisticRegressionCV(Cs=Cs, cv=3, l1_ratios=[0.0, 0.7]).fit(X, y)
    assert ours.scores_.shape == ours.n_iter_.shape == (3, 2, 2)
    assert (ours.coefs_paths_[:, 1, :, :, :-1] == 0).any()  # exact zeros from the L1 part
    assert not (ours.coefs_paths_[:, 0, :, :, :-1] == 0).any()
    train = next(iter(StratifiedKFold(3).split(X, y)))[0]
    single = TorchLogisticRegression(C=0.05, l1_ratio=0.7).fit(X[train], y[train])
    packed = ours.coefs_paths_[0, 1, 0]
    got = objective_value(packed[:, :-1], packed[:, -1], X[train], y[train], C=0.05, l1_ratio=0.7)
    best = objective_value(
        single.coef_, single.intercept_, X[train], y[train], C=0.05, l1_ratio=0.7
    )
    assert abs(got - best) < 1e-6
    assert ours.l1_ratio_ in (0.0, 0.7)
    np.testing.assert_array_equal(ours.l1_ratios_, [0.0, 0.7])


def test_fitted_model_is_a_torch_logistic_regression(breast_cancer, tmp_path):
    X, y = breast_cancer
    ours = TorchLogisticRegressionCV(Cs=4).fit(X, y)
    single = TorchLogisticRegression(C=ours.C_).fit(X, y)
    # Within tol of the same optimum (the refit starts from the folds' mean).
    got = objective_value(ours.coef_, ours.intercept_, X, y, C=ours.C_)
    assert abs(got - objective_value(single.coef_, single.intercept_, X, y, C=ours.C_)) < 1e-7
    sk = ours.to_sklearn()
    assert isinstance(sk, LogisticRegression) and sk.C == ours.C_
    np.testing.assert_allclose(sk.predict_proba(X), ours.predict_proba(X), rtol=1e-10)
    again = pickle.loads(pickle.dumps(ours))
    np.testing.assert_array_equal(again.predict(X), ours.predict(X))
    assert ours.score(X, y) > 0.95
    assert ours.refit_n_iter_ >= 1


def test_score_uses_the_scoring(breast_cancer):
    X, y = breast_cancer
    ours = TorchLogisticRegressionCV(Cs=3, scoring="neg_log_loss").fit(X, y)
    assert ours.score(X, y) < 0  # a log loss, not an accuracy


def test_problems_that_stop_early_warn_once(breast_cancer):
    X, y = breast_cancer
    with pytest.warns(ConvergenceWarning) as record:
        TorchLogisticRegressionCV(max_iter=2).fit(X, y)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "of 50 cross-validation problems" in messages[0]
    assert "ran max_iter=2 epochs (increase max_iter)" in messages[0]
    assert "stalled" not in messages[0]
    assert "the refit with C=" in messages[1]
    assert all(w.filename == __file__ for w in record)


def test_problems_that_stall_are_told_to_use_a_larger_tol_not_more_epochs():
    # Features a thousand spreads from zero: at tol=1e-10 the objective's rounding
    # stops some problems (no step lowers it any more) long before max_iter.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6)) * [0.15, 0.3, 4, 1.5, 0.2, 10] + [150, 170, 650, 150, 25, 330]
    Z = (X - X.mean(0)) / X.std(0) @ rng.normal(size=(6, 3))
    y = (Z + rng.gumbel(size=Z.shape)).argmax(1)
    with pytest.warns(ConvergenceWarning, match="cross-validation problems") as record:
        ours = TorchLogisticRegressionCV(tol=1e-10, cv=3).fit(X, y)
    message = str(record[0].message)
    assert "stalled where no step lowers the objective" in message
    assert "use a larger tol" in message and "increase max_iter" not in message
    assert ours.n_iter_.max() < ours.max_iter


def test_why_short_counts_each_reason():
    from sktorch_lr._cv import _why_short

    converged = np.array([[True, False, False], [False, True, True]])
    n_iter = np.array([[5, 7, 10], [10, 3, 4]])
    assert _why_short(converged, n_iter, 10) == (
        "2 ran max_iter=10 epochs (increase max_iter), 1 stalled where no step lowers the "
        "objective in floating point any more (use a larger tol)"
    )
    assert _why_short(converged, n_iter, 100).startswith("3 stalled")


def test_a_callback_that_stops_the_batch_is_not_a_convergence_failure(breast_cancer, recwarn):
    X, y = breast_cancer

    class StopAfterTwo:
        def setup(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context):
            pass

        def on_fit_task_end(self, estimator, context, **kwargs):
            return context.task_name == "epoch" and context.task_id + 1 >= 2

        def teardown(self, estimator, context):
            pass

    TorchLogisticRegressionCV(Cs=3).set_callbacks(StopAfterTwo()).fit(X, y)
    assert not any("cross-validation problems" in str(w.message) for w in recwarn)


def test_bad_grids_and_folds_get_clear_errors(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(ValueError, match="Cs must be positive"):
        TorchLogisticRegressionCV(Cs=[1.0, -1.0]).fit(X, y)
    with pytest.raises(ValueError, match="l1_ratios must be numbers in"):
        TorchLogisticRegressionCV(l1_ratios=[1.5]).fit(X, y)
    sw = np.ones(len(y))
    cv = [(np.arange(10), np.arange(10, len(y)))]
    sw[:10] = 0
    with pytest.raises(ValueError, match="sum to zero"):
        TorchLogisticRegressionCV(cv=cv).fit(X, y, sample_weight=sw)
    assert not hasattr(TorchLogisticRegressionCV(), "n_features_in_")


def test_no_penalty_in_the_grid(iris):
    X, y = iris
    X = StandardScaler().fit_transform(X)
    ours = TorchLogisticRegressionCV(Cs=[1.0, np.inf], cv=3).fit(X, y)
    assert np.isfinite(ours.coefs_paths_).all()


def test_batch_problems_stop_on_their_own(breast_cancer):
    X, y = breast_cancer
    B = 4
    weights = torch.ones(B, len(y), dtype=torch.float64)
    l2 = torch.tensor([1e0, 1e-2, 1e-4, 0.0], dtype=torch.float64) / len(y)
    problem = BatchProblem(
        torch.as_tensor(X),
        torch.as_tensor(y, dtype=torch.float64),
        weights,
        l2,
        n_outputs=1,
        fit_intercept=True,
    )
    result = solve_batch(problem, kind="dense", max_iter=200, tol=1e-8, measure_ratio=1.0)
    # a stronger penalty is a better conditioned problem: fewer epochs
    assert result.n_iter[0] < result.n_iter[2]
    assert result.epochs == int(result.n_iter.max())
    assert bool(result.converged[:3].all())


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_batch_curvature_on_offset_features_is_the_centred_hessian(offset):
    """Each problem's Hessian in its centred parametrisation, from the closed form on
    explicitly centred rows: columns a thousand spreads from zero once lost their
    spread to cancellation (negative curvatures, a failed factorisation)."""
    rng = np.random.default_rng(0)
    n, d, B = 300, 6, 4
    X = (rng.normal(size=(n, d)) + offset * rng.normal(size=d)) * 10.0 ** rng.uniform(-3, 3, d)
    y = (rng.random(n) < 0.4).astype(np.float64)
    weights = torch.as_tensor(rng.uniform(0, 2, size=(B, n)) * (rng.random((B, n)) < 0.7))
    l2 = torch.full((B,), 1e-3, dtype=torch.float64)
    problem = BatchProblem(
        torch.as_tensor(X), torch.as_tensor(y), weights, l2, n_outputs=1, fit_intercept=True
    )
    coef = torch.as_tensor(rng.normal(size=(B, 1, d)) * 0.3 / X.std(0))
    intercept = torch.as_tensor(rng.normal(size=(B, 1)))
    H = problem.measure(coef, intercept, torch.arange(B), "dense")[:, 0]
    for p in range(B):
        w = weights[p].numpy()
        mean = w @ X / w.sum()
        z = (X - mean) @ coef[p, 0].numpy() + float(intercept[p, 0])
        a = w / w.sum() / (1 + np.exp(-z)) / (1 + np.exp(z))
        Xa = np.c_[X - mean, np.ones(n)]
        expected = (Xa * a[:, None]).T @ Xa
        expected[np.arange(d), np.arange(d)] += 1e-3
        scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
        np.testing.assert_allclose(H[p].numpy() / scale, expected / scale, rtol=0, atol=1e-9)


callback = pytest.importorskip("sklearn.callback")


class _Recorder:
    def __init__(self):
        self.ends = []

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, **kwargs):
        pass

    def on_fit_task_end(self, estimator, context, **kwargs):
        self.ends.append(context.task_name)


def test_callbacks_see_one_subtask_per_epoch_of_the_batch(breast_cancer):
    X, y = breast_cancer
    recorder = _Recorder()
    ours = TorchLogisticRegressionCV(Cs=3).set_callbacks(recorder).fit(X, y)
    epochs = recorder.ends.count("epoch")
    assert epochs == int(ours.n_iter_.max())
    assert recorder.ends[-1] == "fit"


def test_make_classification_many_features():
    X, y = make_classification(300, 40, n_informative=10, random_state=0)
    ours = TorchLogisticRegressionCV(Cs=4, cv=3, **TIGHT).fit(X, y)
    _assert_same_cv(ours, _sklearn_cv(X, y, Cs=4, cv=3))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_random_batches_reach_the_single_fits_optimum(seed):
    # Drawn problems beyond the named data sets: per-column scales from 1e-3 to 1e4 and
    # offsets, 2 to 12 classes, sample weights with zeros, balanced class weights
    # (computed on all of y, weighted), float32, CSR and tensor input. Each batched
    # problem at its default tol against one tight single fit on the fold's rows.
    from sklearn.utils.class_weight import compute_class_weight

    r = np.random.default_rng(seed)
    while True:  # a draw with at least two classes of six rows each
        n, d, K = int(r.integers(60, 800)), int(r.integers(1, 40)), int(r.choice([2, 3, 5, 12]))
        scale = 10.0 ** r.uniform(-3, 4, d) if seed % 2 else np.ones(d)
        X = (r.normal(size=(n, d)) + r.normal(size=d) * 5 * (seed % 3 == 0)) * scale
        Z = X @ (r.normal(size=(K, d)) / scale * r.uniform(0.3, 3)).T
        P = np.exp(Z - Z.max(1, keepdims=True))
        y = (r.random((n, 1)) < (P / P.sum(1, keepdims=True)).cumsum(1)).argmax(1)
        classes, y = np.unique(y, return_inverse=True)
        K = len(classes)
        if K >= 2 and np.bincount(y).min() >= 6:
            break
    sample_weight = r.uniform(0.0, 3.0, n) if seed % 4 < 2 else None
    class_weight = "balanced" if seed % 3 == 1 else None
    fit_intercept = seed != 5
    dtype = np.float32 if seed % 4 == 3 else np.float64
    Xf = X.astype(dtype)
    X_in = [Xf, sp.csr_matrix(Xf), torch.as_tensor(Xf)][seed % 3]
    cv = list(KFold(3, shuffle=True, random_state=seed).split(X, y))
    ours = TorchLogisticRegressionCV(
        Cs=5, cv=cv, class_weight=class_weight, fit_intercept=fit_intercept
    ).fit(X_in, y, sample_weight=sample_weight)
    s = np.ones(n) if sample_weight is None else sample_weight
    if class_weight:
        s = s * compute_class_weight("balanced", classes=np.arange(K), y=y, sample_weight=s)[y]
    X64 = Xf.astype(np.float64)
    for f, (train, _) in enumerate(cv):
        for c, C in enumerate(ours.Cs_):
            Xt, yt, st = X64[train], y[train], s[train]
            if len(np.unique(yt)) < K or st.sum() == 0:
                continue
            single = TorchLogisticRegression(
                C=C, fit_intercept=fit_intercept, tol=1e-9, max_iter=20_000
            ).fit(Xt, yt, sample_weight=st)
            packed = ours.coefs_paths_[f, 0, c]
            coef, intercept = (
                (packed[:, :-1], packed[:, -1])
                if fit_intercept
                else (packed, np.zeros(len(packed)))
            )
            got = objective_value(coef, intercept, Xt, yt, C=C, sample_weight=st)
            best = objective_value(single.coef_, single.intercept_, Xt, yt, C=C, sample_weight=st)
            assert got - best < (1e-4 if dtype == np.float32 else 1e-5), (f, C, got - best)


@pytest.mark.parametrize("sparse", [False, True])
def test_unpenalised_batch_problems_with_constant_columns(sparse):
    """Two constant columns (-0.7) beside the intercept, 6 classes, C up to inf: the
    batch's centred products and gradients there were rounding that its unpenalised
    metrics took as steps (problems stopped 0.5-0.7 above their optimum, with a
    warning). Now each problem reaches its single fit's optimum and the columns'
    coefficients stay at zero."""
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 4))
    y = np.argmax(Z @ rng.normal(size=(4, 6)) * 2 + rng.gumbel(size=(300, 6)), 1)
    X = np.column_stack([np.full(300, -0.7), Z[:, :2], np.full(300, -0.7), Z[:, 2:] * [2e-3, 1]])
    Cs, cv = [1e-2, 1.0, np.inf], StratifiedKFold(3, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = TorchLogisticRegressionCV(Cs=Cs, cv=cv).fit(sp.csr_matrix(X) if sparse else X, y)
    paths = np.asarray(est.coefs_paths_)  # (folds, l1_ratios, Cs, classes, features + 1)
    assert np.all(paths[..., [0, 3]] == 0)
    for f, (train, _) in enumerate(cv.split(X, y)):
        for i, C in enumerate(Cs):
            single = TorchLogisticRegression(C=C, tol=1e-10).fit(X[train], y[train])
            best = objective_value(single.coef_, single.intercept_, X[train], y[train], C=C)
            coef, intercept = paths[f, 0, i, :, :-1], paths[f, 0, i, :, -1]
            got = objective_value(coef, intercept, X[train], y[train], C=C)
            assert got - best <= 1e-6, (f, C)
