"""``TorchLogisticRegressionCV``: every fold and every ``C`` trained at once.

scikit-learn's :class:`~sklearn.linear_model.LogisticRegressionCV` fits a
warm-started path of ``C`` per fold, one problem after another. Here the
folds x Cs problems are one batched torch program (:mod:`sktorch_lr._batch`):
they share ``X``, so an epoch of all of them is one matrix product, with each
problem's training rows as its sample weights (0 on the rows it holds out).
The scores, the choice of ``C`` and the refit follow ``LogisticRegressionCV``.
"""

import inspect
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer, get_scorer_names, make_scorer
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _raise_for_params,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.validation import _check_method_params, check_is_fitted

from ._base import (
    TorchLinearClassifier,
    _caller_stacklevel,
    _effective_weights,
    _encode,
    _module_with,
    _two_or_more,
    _unchanged_on_failure,
    _work,
)
from ._batch import batch_kind, solve_weightings
from ._callbacks import fit_callbacks
from ._data import as_tensor, is_tensor, resolve_device, torch_dtype
from ._estimator import TorchLogisticRegression
from ._objective import linear_logits
from ._threads import threads_for


class TorchLogisticRegressionCV(TorchLinearClassifier):
    """Logistic regression with ``C`` chosen by cross-validation, every fold and C at once.

    The same model and objective as :class:`TorchLogisticRegression` (whose
    defaults it trains with: ``lr="auto"``, full batch), and the semantics of
    :class:`sklearn.linear_model.LogisticRegressionCV`: for each ``C`` in
    ``Cs`` and each split of ``cv``, the model is trained on the training rows
    and scored on the held-out ones; the ``C`` with the best mean score is
    kept, and with ``refit=True`` the model is trained again on all the data.

    The folds x Cs problems share ``X`` and train as one batch: one epoch of
    all of them is one matrix product ``X @ W.T``, with each problem's own
    sample weights (0 on its held-out rows), penalty, preconditioned step,
    momentum and stopping rule. A problem that converges leaves the batch.

    Parameters
    ----------
    Cs : int or array-like of float, default=10
        The grid of inverse regularisation strengths. An int ``n`` means
        ``np.logspace(-4, 4, n)``, as in ``LogisticRegressionCV``.
    l1_ratios : array-like of float in [0, 1] or None, default=None
        Elastic-net mixings to cross-validate with the Cs. ``None`` means a
        pure L2 penalty (``l1_ratios_`` is then ``[None]``, as in
        scikit-learn). Problems with an L1 part are trained one after
        another, each a :class:`TorchLogisticRegression` fit warm-started
        along the Cs; the L2 problems are the batch.
    fit_intercept : bool, default=True
    cv : int, cross-validation generator or iterable, default=None
        As ``LogisticRegressionCV``: ``None`` means 5-fold
        :class:`~sklearn.model_selection.StratifiedKFold`; any scikit-learn
        splitter or iterable of ``(train, test)`` index arrays.
    scoring : str, callable or None, default=None
        A scorer name or ``scorer(estimator, X, y)``; ``None`` is accuracy
        (weighted by ``sample_weight``), as in scikit-learn 1.9.
    refit : bool, default=True
        ``True``: train on all the data with the best ``C`` (starting from the
        folds' mean solution). ``False``: average the folds' coefficients at
        each fold's best ``C``; ``C_`` is the mean of those Cs.
    class_weight : dict, "balanced" or None, default=None
        As in :class:`TorchLogisticRegression`; ``"balanced"`` is computed on
        all of ``y``, as ``LogisticRegressionCV`` does.
    max_iter : int, default=1000
        Maximum epochs of each problem.
    tol : float, default=1e-4
        Each problem stops when its Newton decrement is at most ``tol`` (see
        :class:`TorchLogisticRegression`).
    random_state : int, RandomState instance or None, default=None
        Passed to the refit (it matters only for mini-batches).
    device : str or torch.device, default="cpu"
        Where the batch trains: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``
        or ``"auto"``.
    verbose : int, default=0
        Print the batch's progress every 20 epochs (every epoch for 2 and more).
    use_legacy_attributes : bool, default=False
        ``False``: the attributes' shapes of scikit-learn 1.10 on
        (``C_`` a float, ``scores_`` an array, ...). ``True``: the older
        dicts keyed by class, as ``LogisticRegressionCV(use_legacy_attributes=True)``.

    Attributes
    ----------
    Cs_ : ndarray of shape (n_cs,)
    l1_ratios_ : ndarray of shape (n_l1_ratios,)
    C_ : float
        The chosen ``C`` (with ``refit=False``, the mean of each fold's best).
    l1_ratio_ : float
    scores_ : ndarray of shape (n_folds, n_l1_ratios, n_cs)
        The held-out score of each problem.
    coefs_paths_ : ndarray of shape (n_folds, n_l1_ratios, n_cs, n_classes, n_dof)
        Each problem's coefficients, its intercept last (``n_dof = n_features
        + 1`` with an intercept); ``n_classes`` is 1 for two classes.
    n_iter_ : ndarray of shape (n_folds, n_l1_ratios, n_cs)
        Epochs each problem trained.
    coef_, intercept_, classes_, module_, n_features_in_, feature_names_in_
        The fitted model, as for :class:`TorchLogisticRegression`.
    refit_n_iter_ : int
        Epochs of the refit (0 with ``refit=False``).
    loss_curve_ : list of float
        The refit's objective after each epoch, as
        :class:`TorchLogisticRegression`'s (empty with ``refit=False``).

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sktorch_lr import TorchLogisticRegressionCV
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), TorchLogisticRegressionCV()).fit(X, y)
    >>> clf[-1].scores_.shape
    (5, 1, 10)
    >>> print(f"{clf[-1].C_:.3g}")
    0.359
    >>> print(f"{clf.score(X, y):.3f}")
    0.988
    """

    _parameter_constraints: dict = {
        "Cs": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "l1_ratios": ["array-like", None],
        "fit_intercept": ["boolean"],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "refit": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": ["verbose"],
        "use_legacy_attributes": ["boolean"],
    }

    def __init__(
        self,
        *,
        Cs=10,
        l1_ratios=None,
        fit_intercept=True,
        cv=None,
        scoring=None,
        refit=True,
        class_weight=None,
        max_iter=1000,
        tol=1e-4,
        random_state=None,
        device="cpu",
        verbose=0,
        use_legacy_attributes=False,
    ):
        self.Cs = Cs
        self.l1_ratios = l1_ratios
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.use_legacy_attributes = use_legacy_attributes

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, **params):
        """Cross-validate every C (and l1_ratio) at once, then refit with the best.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the training rows in each fold's objective, and of the
            held-out rows in its score.
        **params : dict
            Passed to the splitter (``groups``, ...) and the scorer, with
            metadata routing enabled; to the scorer without it.

        Returns
        -------
        self : TorchLogisticRegressionCV
        """
        _raise_for_params(params, self, "fit")
        with _unchanged_on_failure(self):
            return self._fit(X, y, sample_weight, params)

    def _fit(self, X, y, sample_weight, params):
        X_in = X
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight, reset=True)
        classes = _two_or_more(np.unique(y))
        y_enc = _encode(y, classes)
        weights = _effective_weights(self.class_weight, classes, y_enc, y, sample_weight)
        Cs = _grid_of_cs(self.Cs)
        l1_ratios = _grid_of_l1_ratios(self.l1_ratios)
        split_params, score_params = self._routed(sample_weight, params)
        cv = check_cv(self.cv, y, classifier=True)
        folds = list(cv.split(_splittable(X), y, **split_params))
        n_folds, n_l1, n_cs = len(folds), len(l1_ratios), len(Cs)
        binary = len(classes) == 2
        n_outputs = 1 if binary else len(classes)
        n_features = X.shape[1]
        n_dof = n_features + self.fit_intercept
        paths = np.zeros((n_folds, n_l1, n_cs, n_outputs, n_dof))
        n_iter = np.zeros((n_folds, n_l1, n_cs), dtype=np.int64)
        converged = np.ones((n_folds, n_l1, n_cs), dtype=bool)
        fold_weights = _fold_weights(weights, len(y), folds)

        batched = [j for j, r in enumerate(l1_ratios) if not r]
        if batch_kind(n_features, n_outputs) is None:
            batched = []  # wide models: one fit at a time (see _fit_one_by_one)
        stopped = False  # a callback asked the batch to stop
        if batched:
            stopped = self._fit_batch(
                X,
                y_enc,
                fold_weights,
                Cs,
                batched,
                n_outputs,
                paths,
                n_iter,
                converged,
                hook_data=(X_in, y, sample_weight),
            )
        for j in range(n_l1):
            if j not in batched:
                self._fit_one_by_one(
                    X, y, fold_weights, Cs, j, l1_ratios[j], paths, n_iter, converged
                )
        if stopped:  # the batch's problems stopped where a callback asked
            converged[:, batched] = True
        if not converged.all():
            warnings.warn(
                f"TorchLogisticRegressionCV: {int((~converged).sum())} of {converged.size} "
                f"cross-validation problems stopped before their Newton decrement reached "
                f"tol={self.tol:g}: {_why_short(converged, n_iter, self.max_iter)}.",
                ConvergenceWarning,
                stacklevel=_caller_stacklevel(),
            )
        # Scorers and the refit see a DataFrame as given (its feature names), else the
        # validated X (CSR, numpy or tensor).
        X_named = X_in if hasattr(X_in, "columns") else X
        if self.scoring in (None, "accuracy") and set(score_params) <= {"sample_weight"}:
            scores = _accuracies(X, y_enc, folds, paths, score_params.get("sample_weight"))
        else:
            scores = self._scores(X_named, y, classes, folds, paths, Cs, l1_ratios, score_params)
        self._select(X_named, y, sample_weight, classes, Cs, l1_ratios, scores, paths)
        self.Cs_ = Cs
        self.l1_ratios_ = np.asarray(l1_ratios if self.l1_ratios is not None else [None])
        self.scores_ = scores
        self.coefs_paths_ = paths
        self.n_iter_ = n_iter
        if self.use_legacy_attributes:
            self._to_legacy_attributes(classes)
        return self

    def _routed(self, sample_weight, params):
        """``(splitter params, scorer params)``, routed as ``LogisticRegressionCV`` routes them."""
        if _routing_enabled():
            routed = process_routing(self, "fit", sample_weight=sample_weight, **params)
            return routed.splitter.split, routed.scorer.score
        score_params = dict(params)
        if sample_weight is not None:
            score_params["sample_weight"] = sample_weight
        return {}, score_params

    def _fit_batch(
        self, X, y_enc, fold_weights, Cs, l1_columns, n_outputs, paths, n_iter, converged, hook_data
    ):
        """Train the L2 problems (folds x Cs) as one batch; fill their slots in place.

        Returns whether a callback stopped the batch."""
        n_folds, n_cs = len(fold_weights), len(Cs)
        callbacks = fit_callbacks(self, *hook_data, self.max_iter, None)
        on_epoch = None
        stopped = False
        if callbacks is not None:

            def on_epoch(epoch):
                nonlocal stopped
                stopped = bool(callbacks.epoch_end(None))
                if not stopped and epoch < self.max_iter:
                    callbacks.epoch_begin(None)
                return stopped

            callbacks.epoch_begin(None)
        result = solve_weightings(
            X,
            y_enc,
            np.repeat(fold_weights, n_cs, axis=0),  # problem p = fold * n_cs + c
            np.tile(Cs, n_folds),
            n_outputs=n_outputs,
            fit_intercept=self.fit_intercept,
            device=resolve_device(self.device),
            dtype=X.dtype if is_tensor(X) else torch_dtype(X.dtype),
            max_iter=self.max_iter,
            tol=self.tol,
            on_epoch=on_epoch,
            verbose=self.verbose,
        )
        if callbacks is not None:
            callbacks.fit_end()
        coef = result.coef.detach().cpu().double().numpy().reshape(n_folds, n_cs, n_outputs, -1)
        intercept = None
        if result.intercept is not None:
            intercept = result.intercept.detach().cpu().double().numpy()
            intercept = intercept.reshape(n_folds, n_cs, n_outputs, 1)
        for j in l1_columns:
            paths[:, j] = coef if intercept is None else np.concatenate([coef, intercept], -1)
            n_iter[:, j] = result.n_iter.cpu().numpy().reshape(n_folds, n_cs)
            converged[:, j] = result.converged.cpu().numpy().reshape(n_folds, n_cs)
        return stopped

    def _fit_one_by_one(self, X, y, fold_weights, Cs, j, l1_ratio, paths, n_iter, converged):
        """Problems the batch does not take (an L1 part, or a model too wide for a
        dense metric): one :class:`TorchLogisticRegression` fit each, warm-started
        from the previous C of the same fold. Every fit sees all rows, the
        held-out ones with weight 0, so each fold knows every class."""
        order = np.argsort(Cs)
        for f, w in enumerate(fold_weights):
            est = TorchLogisticRegression(
                l1_ratio=float(l1_ratio or 0.0),
                fit_intercept=self.fit_intercept,
                max_iter=self.max_iter,
                tol=self.tol,
                warm_start=True,
                device=self.device,
                batch_size=None,
            )
            for c in order:
                est.set_params(C=float(Cs[c]))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    est.fit(X, y, sample_weight=w)
                paths[f, j, c] = _packed(est.coef_, est.intercept_, self.fit_intercept)
                n_iter[f, j, c] = est.n_iter_
                converged[f, j, c] = not any(
                    issubclass(w_.category, ConvergenceWarning) for w_ in caught
                )

    # -------------------------------------------------------------- scoring

    def _scores(self, X, y, classes, folds, paths, Cs, l1_ratios, score_params):
        """Held-out scores of every problem: ``(n_folds, n_l1_ratios, n_cs)``."""
        n_folds, n_l1, n_cs = paths.shape[:3]
        scores = np.empty((n_folds, n_l1, n_cs))
        scorer = self._fold_scorer(classes)
        for f, (_, test) in enumerate(folds):
            X_test = _rows(X, test)
            y_test = y[test]
            params = _check_method_params(X, params=score_params, indices=test)
            for j in range(n_l1):
                for c in range(n_cs):
                    model = self._model_at(classes, paths[f, j, c], Cs[c], l1_ratios[j])
                    scores[f, j, c] = scorer(model, X_test, y_test, **params)
        return scores

    def _fold_scorer(self, classes):
        """The scorer, told all the classes (a held-out fold may lack some), as sklearn does.

        The scorer's own keyword arguments win over the ones added here: scikit-learn
        1.9's ``LogisticRegressionCV`` passes ``pos_label`` twice for binary targets
        and a scorer that sets it (``"f1_macro"``) and raises a ``TypeError``.
        """
        if self.scoring is None:
            scorer = get_scorer("accuracy")
        else:
            scorer = get_scorer(self.scoring)
        sig = []
        if hasattr(scorer, "_score_func"):
            sig = inspect.signature(scorer._score_func).parameters
        if "labels" not in sig:
            return scorer
        pos_label = {}
        if len(classes) == 2 and "pos_label" in sig:
            pos_label["pos_label"] = classes[-1]
        kwargs = {"labels": classes, **pos_label, **getattr(scorer, "_kwargs", {})}
        return make_scorer(
            scorer._score_func,
            greater_is_better=scorer._sign == 1,
            response_method=scorer._response_method,
            **kwargs,
        )

    def _model_at(self, classes, packed, C, l1_ratio):
        """A fitted :class:`TorchLogisticRegression` holding one problem's solution."""
        model = TorchLogisticRegression(
            C=float(C),
            l1_ratio=float(l1_ratio or 0.0),
            fit_intercept=self.fit_intercept,
            class_weight=self.class_weight,
            max_iter=self.max_iter,
            tol=self.tol,
            device=self.device,
        )
        coef, intercept = _unpacked(packed, self.fit_intercept)
        model.classes_ = classes
        model.module_ = _module_with(
            [torch.as_tensor(coef)] + ([torch.as_tensor(intercept)] if self.fit_intercept else []),
            coef.shape[1],
            coef.shape[0],
            bias=self.fit_intercept,
            dtype=torch.float64,
            device=resolve_device(self.device),
        )
        model.n_features_in_ = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            model.feature_names_in_ = self.feature_names_in_
        model.n_iter_ = 0
        return model

    # ------------------------------------------------------------ selection

    def _select(self, X, y, sample_weight, classes, Cs, l1_ratios, scores, paths):
        """``C_``, ``l1_ratio_`` and the fitted model, as ``LogisticRegressionCV`` chooses them."""
        n_folds, n_l1, n_cs = scores.shape
        if self.refit:
            mean = scores.sum(axis=0)  # (n_l1, n_cs)
            j, c = np.unravel_index(np.argmax(mean), mean.shape)
            C, l1_ratio = float(Cs[c]), float(l1_ratios[j] or 0.0)
            start = paths[:, j, c].mean(axis=0)
            model = self._model_at(classes, start, C, l1_ratio)
            model.set_params(warm_start=True, random_state=self.random_state)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(X, y, sample_weight=sample_weight)
            for w in caught:
                message = str(w.message).replace("TorchLogisticRegression stopped", "stopped")
                warnings.warn(
                    f"TorchLogisticRegressionCV: the refit with C={C:g} {message}",
                    w.category,
                    stacklevel=_caller_stacklevel(),
                )
            self.refit_n_iter_ = int(model.n_iter_)
            self.loss_curve_ = list(model.loss_curve_)
        else:
            best = np.argmax(scores.reshape(n_folds, -1), axis=1)
            js, cs = np.unravel_index(best, (n_l1, n_cs))
            packed = np.mean([paths[f, js[f], cs[f]] for f in range(n_folds)], axis=0)
            C = float(np.mean(Cs[cs]))
            l1_ratio = float(np.mean([l1_ratios[j] or 0.0 for j in js]))
            model = self._model_at(classes, packed, C, l1_ratio)
            self.refit_n_iter_ = 0
            self.loss_curve_ = []
        self.C_ = C
        self.l1_ratio_ = l1_ratio
        self.classes_ = classes
        self.module_ = model.module_

    def _to_legacy_attributes(self, classes):
        """scikit-learn's dicts keyed by class (``use_legacy_attributes=True``)."""
        binary = len(classes) == 2
        keys = classes[1:] if binary else classes
        K = len(keys)
        elastic = self.l1_ratios is not None
        paths = np.moveaxis(self.coefs_paths_, 1, 2)  # (folds, cs, l1, K, dof)
        scores = np.moveaxis(self.scores_, 1, 2)  # (folds, cs, l1)
        n_iter = np.moveaxis(self.n_iter_, 1, 2)[None]
        if not elastic:
            paths, scores, n_iter = paths[:, :, 0], scores[:, :, 0], n_iter[..., 0]
        self.coefs_paths_ = {
            key: (paths[..., 0, :] if binary else paths[..., k, :]) for k, key in enumerate(keys)
        }
        self.scores_ = {key: scores.copy() for key in keys}
        self.n_iter_ = n_iter
        self.C_ = np.repeat(self.C_, K)
        self.l1_ratio_ = np.repeat(self.l1_ratio_ if elastic else None, K)

    # ------------------------------------------------------------ the rest

    def score(self, X, y, sample_weight=None):
        """The ``scoring`` of the fitted model on ``(X, y)`` (accuracy when None).

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        if self.scoring is None:
            return super().score(X, y, sample_weight=sample_weight)
        scorer = get_scorer(self.scoring)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return scorer(self, X, y, **kwargs)

    def get_metadata_routing(self):
        """Route ``fit``'s metadata to the splitter and the scorer, as ``LogisticRegressionCV``."""
        return (
            MetadataRouter(owner=self)
            .add_self_request(self)
            .add(
                splitter=self.cv if hasattr(self.cv, "split") else check_cv(self.cv),
                method_mapping=MethodMapping().add(caller="fit", callee="split"),
            )
            .add(
                scorer=get_scorer(self.scoring or "accuracy"),
                method_mapping=MethodMapping()
                .add(caller="score", callee="score")
                .add(caller="fit", callee="score"),
            )
        )

    def _fitted_penalty(self):
        C = np.asarray(self.C_).ravel()[0]
        l1_ratio = np.asarray(self.l1_ratio_).ravel()[0]
        return float(C), float(l1_ratio or 0.0)

    def _final_n_iter(self):
        return self.refit_n_iter_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = True
        return tags


# ---------------------------------------------------------------- helpers


def _accuracies(X, y_enc, folds, paths, sample_weight):
    """Held-out accuracy of every problem at once, weighted by ``sample_weight``.

    The default scorer, without a scorer call per problem: the logits of every
    problem of a fold in one matrix product, in float64 like the fitted
    models' predictions.
    """
    n_folds, n_l1, n_cs, K = paths.shape[:4]
    scores = np.empty((n_folds, n_l1, n_cs))
    with threads_for(_work(X, K * n_l1 * n_cs)):  # small: one thread, as predictions
        for f, (_, test) in enumerate(folds):
            scores[f] = _fold_accuracies(X, y_enc, test, paths[f], sample_weight)
    return scores


def _fold_accuracies(X, y_enc, test, paths, sample_weight):
    """One fold's held-out accuracies, ``(n_l1_ratios, n_cs)``, of its ``paths``."""
    n_l1, n_cs, K, n_dof = paths.shape
    d = X.shape[1]
    Xt = as_tensor(_rows(X, test), torch.device("cpu"), torch.float64)
    packed = torch.as_tensor(paths.reshape(-1, K, n_dof))
    logits = linear_logits(Xt, packed[:, :, :d].reshape(-1, d), None).view(len(test), -1, K)
    if n_dof > d:
        logits = logits + packed[:, :, d]
    pred = (logits[:, :, 0] > 0).long() if K == 1 else logits.argmax(2)
    correct = (pred == torch.as_tensor(y_enc[test], dtype=torch.long)[:, None]).double()
    w = torch.ones(len(test), dtype=torch.float64)
    if sample_weight is not None:
        w = torch.as_tensor(np.asarray(sample_weight, dtype=np.float64)[test])
    return ((w @ correct) / w.sum()).numpy().reshape(n_l1, n_cs)


def _grid_of_cs(Cs):
    if isinstance(Cs, Integral):
        return np.logspace(-4, 4, Cs)
    Cs = np.asarray(Cs, dtype=np.float64).ravel()
    if Cs.size == 0 or not (Cs > 0).all() or np.isnan(Cs).any():
        raise ValueError(f"Cs must be positive numbers (np.inf: no penalty); got {Cs!r}.")
    return Cs


def _grid_of_l1_ratios(l1_ratios):
    if l1_ratios is None:
        return [None]
    values = np.asarray(l1_ratios, dtype=np.float64).ravel()
    if values.size == 0 or np.isnan(values).any() or (values < 0).any() or (values > 1).any():
        raise ValueError(f"l1_ratios must be numbers in [0, 1]; got {l1_ratios!r}.")
    return list(values)


def _why_short(converged, n_iter, max_iter):
    """Why the problems short of tol stopped: out of epochs, or stalled.

    Without a callback, a problem (batched or fitted alone) stops short of
    ``tol`` either after ``max_iter`` epochs or because no step lowers its
    objective in floating point any more (the solvers' stall stop): a tol
    below what the data's rounding resolves, which more epochs cannot cure.
    """
    short = ~converged
    ran_out = int((short & (n_iter >= max_iter)).sum())
    stalled = int(short.sum()) - ran_out
    reasons = []
    if ran_out:
        reasons.append(f"{ran_out} ran max_iter={max_iter} epochs (increase max_iter)")
    if stalled:
        reasons.append(
            f"{stalled} stalled where no step lowers the objective in floating point any "
            "more (use a larger tol)"
        )
    return ", ".join(reasons)


def _fold_weights(weights, n_samples, folds):
    """``(n_folds, n_samples)``: each fold's training weights, 0 on its held-out rows."""
    base = np.ones(n_samples) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.zeros((len(folds), n_samples))
    for f, (train, _) in enumerate(folds):
        out[f, train] = base[train]
    if not (out.sum(1) > 0).all():
        raise ValueError("A training fold has sample weights that sum to zero.")
    return out


def _splittable(X):
    """``X`` as splitters take it (they need its length; a tensor stays out of numpy)."""
    if is_tensor(X):
        return np.empty((X.shape[0], 0))
    return X


def _rows(X, rows):
    from sklearn.utils import _safe_indexing

    if is_tensor(X):
        return X[torch.as_tensor(rows, device=X.device)]
    return _safe_indexing(X, rows)


def _packed(coef, intercept, fit_intercept):
    """``(K, n_dof)``: the coefficients, the intercept in the last column."""
    coef = np.asarray(coef, dtype=np.float64)
    if not fit_intercept:
        return coef
    return np.concatenate([coef, np.asarray(intercept, dtype=np.float64)[:, None]], 1)


def _unpacked(packed, fit_intercept):
    packed = np.asarray(packed, dtype=np.float64)
    if not fit_intercept:
        return packed, None
    return np.ascontiguousarray(packed[:, :-1]), np.ascontiguousarray(packed[:, -1])
