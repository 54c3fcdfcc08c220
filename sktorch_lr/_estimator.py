"""``TorchLogisticRegression``: validation and bookkeeping around the solver."""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ._base import (
    TorchLinearClassifier,
    _balanced_class_weight,
    _caller_stacklevel,
    _check_largest,
    _effective_weights,
    _encode,
    _labels_to_numpy,
    _module_with,
    _state_on,
    _two_or_more,
    _unchanged_on_failure,
    _work,
)
from ._callbacks import fit_callbacks
from ._curvature import (
    CURVATURE_MAX_ROWS,
    STOCHASTIC_MOMENTUM,
    choose_preconditioner,
    measure_cost_ratio,
    preconditioned_spectrum,
    step_rule,
)
from ._dask import is_dask_collection
from ._data import TrainingData, is_tensor, resolve_device, torch_dtype
from ._objective import penalty_strengths
from ._solver import Problem, SolverState, solve
from ._threads import threads_for

# batch_size="auto": full batch up to this many samples, mini-batches of
# AUTO_BATCH_SIZE above it.
AUTO_FULL_BATCH_MAX = 2**24
AUTO_BATCH_SIZE = 65_536
# A float32 fit that went on with float64 sums warns where its model's own float32
# objective is this far (relatively, or absolutely below 1) above what training
# reached: the float32 target of the convergence tests (1e-4).
FLOAT32_MODEL_GAP = 1e-4


class TorchLogisticRegression(TorchLinearClassifier):
    """Logistic regression trained as a PyTorch model with autograd and momentum SGD.

    The model is the lesson's ``nn.Linear`` followed by a sigmoid (two classes)
    or a softmax (``K > 2`` classes, multinomial). Gradients come from
    autograd; updates are momentum SGD with :class:`torch.optim.SGD`'s
    semantics; an L1 part of the penalty is applied by its proximal step, in the
    step's metric (soft-thresholding for a diagonal one). The
    objective is the one :class:`~sklearn.linear_model.LogisticRegression`
    minimises, so a converged fit gives the same coefficients.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength, as in ``LogisticRegression``;
        ``np.inf`` means no penalty.
    l1_ratio : float, default=0.0
        Elastic-net mixing: ``0`` is a pure L2 penalty, ``1`` pure L1.
    fit_intercept : bool, default=True
        Whether to learn an (unpenalised) intercept.
    lr : float or "auto", default="auto"
        Step size. ``"auto"`` runs *preconditioned* momentum SGD: the
        features are centred (an exact reparametrisation: the unpenalised
        intercept absorbs the shift; sparse input is centred implicitly), the
        Hessian of the objective is measured with autograd (in full, per class,
        or its diagonal, by model size) and the SGD step, with
        :class:`torch.optim.SGD`'s semantics, runs on ``P^-1 grad``. ``lr`` is
        then the step along that direction (1 is Newton's step). A step that
        raises the objective is taken back and shortened, so ``loss_curve_``
        never rises; the curvature is measured again as the fit moves (see
        the user guide). A float is plain momentum SGD on the gradient, as the
        lesson runs it, with no preconditioning or safeguards.
    momentum : float or "auto", default="auto"
        Heavy-ball momentum in ``[0, 1)``. ``"auto"``: with ``lr="auto"`` and
        full batch, Polyak's optimum for the range of the preconditioned
        curvature (0 when the metric is the exact Hessian, more when it is
        approximate or stale, learnt from the observed convergence); 0.9 for
        mini-batches, ``partial_fit`` and a float ``lr``. A float is used as
        given (with ``lr="auto"`` the step is then ``(1 + momentum) / L``).
    nesterov : bool, default=False
        Nesterov momentum (``torch.optim.SGD(nesterov=True)``). With
        ``lr="auto"`` and the default momentum: ``lr = 1 / L``,
        ``momentum = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)``.
    batch_size : int, None or "auto", default="auto"
        ``None``: full batch, one step per epoch. An int: mini-batches of that
        size, reshuffled every epoch from ``random_state`` (with ``lr="auto"``
        the batch doubles whenever three epochs in a row set no new best
        objective or shrink the Newton decrement by less than a fifth, until
        it is the full batch). ``"auto"``: full batch up to
        2**24 samples (on a CPU a full-batch epoch costs two reads of ``X`` and
        the curvature-tuned steps need few of them), mini-batches of 65,536
        above.
    max_iter : int, default=1000
        Maximum number of epochs (passes over the data).
    tol : float, default=1e-4
        With ``lr="auto"``: stop when the Newton decrement
        ``sqrt(g^T H^-1 g)`` (``g`` the gradient, the L1 part as its
        minimum-norm subgradient; ``H`` the measured curvature) is at most
        ``tol``. It is scale-free (rescaling a feature changes nothing) and
        bounds the objective's distance to its minimum: about ``tol**2 / 2``.
        A fit that can lower the objective no further in its precision stops
        too, warning only if the decrement is still above both ``tol`` and
        that precision's resolution (``sqrt(eps)``). With a float ``lr``: stop
        when the gradient's largest entry is at most ``tol``, the measure
        ``LogisticRegression(solver="lbfgs")`` stops on. ``tol=0`` runs all
        ``max_iter`` epochs.
    class_weight : dict, "balanced" or None, default=None
        Weights ``{class_label: weight}`` multiplied into the sample weights;
        ``"balanced"`` uses ``S / (n_classes * S_k)``, ``S_k`` the sum of the
        sample weights of class ``k`` (``np.bincount(y)`` without them), as
        ``LogisticRegression`` does; a class whose sample weights are all zero
        gets weight 0 and is not counted in ``n_classes`` (scikit-learn divides
        by its zero sum).
    warm_start : bool, default=False
        Start ``fit`` from the previous solution when the classes and the
        number of features are unchanged.
    random_state : int, RandomState instance or None, default=None
        Seeds a private :class:`torch.Generator` that orders the mini-batches
        (the only randomness: parameters start at zero). The same int gives
        bit-identical coefficients. ``None`` draws the seed from numpy's global
        RandomState. Torch's global generator is never used.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (CUDA,
        then MPS, then CPU). Unavailable devices raise ``ValueError``.
    verbose : int, default=0
        Print the objective, the gradient's largest entry, ``lr`` and the
        momentum: every 20 epochs (the lesson's period) for ``verbose=1``,
        every epoch for ``verbose>=2``.
    track_gradients : bool, default=False
        Record ``gradient_history_`` (objective, gradient norm, update size
        and distance from the start, per epoch). Costs nothing when off.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        The module's weight, in the training dtype (float32 for float32
        input, as scikit-learn). On the CPU it shares the module's memory, and
        assigning it writes into the module: ``coef_``, ``intercept_`` and
        ``module_`` are one model.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        The module's bias; zeros when ``fit_intercept=False``.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` had string column names.
    n_iter_ : int
        Epochs run by the last ``fit`` (summed over ``partial_fit`` calls).
    loss_curve_ : list of float
        The objective after each epoch (for ``partial_fit``, on each call's
        data). With ``lr="auto"`` and full batch it never rises: a step that
        would raise it is taken back (that epoch repeats the previous value).
        With a float ``lr`` it is whatever momentum SGD does, rises included.
    module_ : LogisticRegressionModule
        The trained torch module; ``module_(X)`` returns probabilities.
    lr_ : float
        The step size used at the end of training (along ``P^-1 grad`` for
        ``lr="auto"``).
    momentum_ : float
        The momentum used at the end of training.
    gradient_history_ : dict of ndarray
        Only with ``track_gradients=True``, one row per epoch (``n_iter_``
        rows): ``objective``, ``grad_norm`` (gradient of the smooth part at the
        epoch's end), ``update_norm`` (how far the parameters moved in the
        epoch), ``distance_from_init``, and the parameters ``coef`` (shape
        ``(n_iter_, *coef_.shape)``) and ``intercept``: the snapshots that
        :func:`sktorch_lr.plotting.plot_training_snapshots` draws.

    See Also
    --------
    sklearn.linear_model.LogisticRegression : The same objective, solved by lbfgs & co.
    sklearn.linear_model.SGDClassifier : Plain SGD on linear models.

    Notes
    -----
    With ``s_i = sample_weight_i * class_weight[y_i]`` and ``S = sum_i s_i``,
    training minimises

    .. math::

        J(W, b) = \\frac{1}{S} \\sum_i s_i \\, \\ell_i(W, b)
        + \\frac{(1 - \\rho) \\|W\\|_2^2 / 2 + \\rho \\|W\\|_1}{C S},

    with ``rho = l1_ratio`` and ``ell_i`` the (binary or multinomial)
    cross-entropy. ``C * S * J`` is ``LogisticRegression``'s objective. Inputs
    may be numpy arrays (float32 trains in float32, float64 in float64),
    pandas DataFrames, scipy sparse matrices (trained sparse, never densified
    whole) or torch tensors (used in place, also on a GPU; predictions on a
    tensor come back as tensors).

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sktorch_lr import TorchLogisticRegression
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), TorchLogisticRegression()).fit(X, y)
    >>> print(f"{clf.score(X, y):.3f}")
    0.988
    >>> clf[-1].coef_.shape
    (1, 30)
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, np.inf, closed="right")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "fit_intercept": ["boolean"],
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "momentum": [Interval(Real, 0, 1, closed="left"), StrOptions({"auto"})],
        "nesterov": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": ["verbose"],
        "track_gradients": ["boolean"],
    }

    def __init__(
        self,
        *,
        C=1.0,
        l1_ratio=0.0,
        fit_intercept=True,
        lr="auto",
        momentum="auto",
        nesterov=False,
        batch_size="auto",
        max_iter=1000,
        tol=1e-4,
        class_weight=None,
        warm_start=False,
        random_state=None,
        device="cpu",
        verbose=0,
        track_gradients=False,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.track_gradients = track_gradients

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model by momentum SGD from zero (or the previous solution).

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Any labels scikit-learn accepts; at least two classes.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights ``s_i`` (multiplied by ``class_weight``).

        Returns
        -------
        self : TorchLogisticRegression
        """
        _check_parameter_pairs(self)
        with _unchanged_on_failure(self):
            return self._fit(X, y, sample_weight)

    def _fit(self, X, y, sample_weight):
        if is_dask_collection(X):
            return self._fit_dask(X, y, sample_weight)
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight, reset=True)
        classes = _two_or_more(np.unique(y))
        y_enc = _encode(y, classes)
        weights = _effective_weights(self.class_weight, classes, y_enc, y, sample_weight)
        self._fit_full(X, y_enc, classes, weights, (X, y, sample_weight), X.shape[1])
        return self

    def _fit_full(self, X, y_enc, classes, weights, hook_data, n_features, problem=None):
        """A full ``fit``: from the previous solution with ``warm_start``, else from zero."""
        previous = None
        if self.warm_start and _compatible(self, classes, n_features):
            previous = self.module_
        self._fit_epochs(
            X,
            y_enc,
            classes,
            weights,
            hook_data=hook_data,
            previous_module=previous,
            solver_state=None,
            generator=None,
            max_iter=self.max_iter,
            partial=False,
            problem=problem,
        )

    def _fit_dask(self, X, y, sample_weight):
        """``fit`` on dask collections: a map-reduce per epoch, ``X`` never gathered."""
        import dask.array as da

        from ._dask import DaskData, DaskProblem, as_dask_array

        if self.batch_size not in (None, "auto"):
            raise ValueError(
                f"batch_size={self.batch_size!r} with dask input: fit computes the exact "
                "full-batch objective on the workers every epoch, and mini-batches would bring "
                "rows to the client every step. Use batch_size=None or 'auto', or stream with "
                "dask_ml.wrappers.Incremental (partial_fit on one block at a time)."
            )
        names = getattr(X, "columns", None)
        Xd = as_dask_array(X, "X")
        if Xd.ndim != 2:
            raise ValueError(f"Expected a 2D dask array, got {Xd.ndim} dimension(s).")
        if not isinstance(Xd._meta, np.ndarray):
            # dask's own reductions (the means' pass) fail on scipy.sparse chunks.
            raise TypeError(
                "fit on a dask array needs numpy chunks; this one's chunks are "
                f"{type(Xd._meta).__module__}.{type(Xd._meta).__name__}. Densify them "
                "(X.map_blocks(lambda b: b.toarray())) or fit a scipy.sparse matrix in memory."
            )
        if Xd.dtype not in (np.float32, np.float64):
            Xd = Xd.astype(np.float64)
        yd = as_dask_array(
            y if is_dask_collection(y) else da.from_array(np.asarray(y), chunks=(Xd.chunks[0],)),
            "y",
        )
        if yd.shape[0] != Xd.shape[0]:
            raise ValueError(f"X has {Xd.shape[0]} rows but y has {yd.shape[0]}.")
        swd = None
        if sample_weight is not None:
            swd = as_dask_array(
                sample_weight
                if is_dask_collection(sample_weight)
                else da.from_array(np.asarray(sample_weight, np.float64), chunks=(Xd.chunks[0],)),
                "sample_weight",
            ).astype(np.float64)
        classes = np.unique(np.asarray(da.unique(yd).compute()))
        check_classification_targets(classes)  # the labels' type shows in their set
        classes = _two_or_more(classes)
        class_weight = _dask_class_weight(self.class_weight, classes, yd, swd)
        dtype = torch.float32 if Xd.dtype == np.float32 else torch.float64
        data = DaskData(Xd, yd, swd, classes, class_weight, dtype=dtype)
        # The checks an in-memory fit makes of the values, from numbers DaskData
        # computed in its one pass over the partitions.
        _check_largest(data.largest)
        if not data.lowest_weight >= 0:
            raise ValueError(
                "sample_weight holds negative or NaN values; weights must be non-negative."
            )
        if not data.weight_sum > 0:
            raise ValueError("The sample weights sum to zero; at least one must be positive.")
        problem = DaskProblem(
            data,
            penalty_strengths(self.C, self.l1_ratio, data.weight_sum),
            fit_intercept=self.fit_intercept,
        )
        if self.lr != "auto":
            problem.mean = None  # a float lr is plain SGD, uncentred, as in memory
        self._fit_full(None, None, classes, None, (Xd, yd, swd), Xd.shape[1], problem)
        self.n_features_in_ = Xd.shape[1]
        vars(self).pop("feature_names_in_", None)
        if names is not None and all(isinstance(c, str) for c in names):
            self.feature_names_in_ = np.asarray(list(names), dtype=object)
        return self

    def _dask_map(self, X, method):
        """``method`` block by block on a dask collection: a lazy dask array."""
        from ._dask import as_dask_array

        check_is_fitted(self)
        Xd = as_dask_array(X, "X")
        K = len(self.classes_)

        def apply(block):
            return getattr(self, method)(block)

        if method == "predict":
            return Xd.map_blocks(apply, drop_axis=1, dtype=self.classes_.dtype)
        if method == "decision_function" and K == 2:
            return Xd.map_blocks(apply, drop_axis=1, dtype=np.float64)
        return Xd.map_blocks(apply, chunks=(Xd.chunks[0], (K,)), dtype=np.float64)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch of momentum SGD on ``(X, y)``, continuing from the current state.

        The momentum buffers, the step size and the random generator carry
        over, so a stream of calls is one continuous training run. With
        ``lr="auto"`` the step is the stochastic rule ``(1 - momentum) / L``,
        ``L`` measured on the chunks of calls 1, 2, 4, 8, ... The penalty of
        each call is scaled by that call's weight sum (the objective of the
        chunk), as ``SGDClassifier.partial_fit`` does.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All the classes; required on the first call, as in SGDClassifier.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : TorchLogisticRegression
        """
        _check_parameter_pairs(self)
        with _unchanged_on_failure(self):
            return self._partial_fit(X, y, classes, sample_weight)

    def _partial_fit(self, X, y, classes, sample_weight):
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            classes = _labels_to_numpy(classes)
            if np.asarray(classes).dtype.kind in "fc" and not np.isfinite(classes).all():
                raise ValueError(f"`classes` contains NaN or infinity: {classes!r}.")
            classes = np.unique(classes)
            if not first_call and not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on the first call to "
                    f"partial_fit, which was {self.classes_!r}."
                )
            if len(classes) < 2:
                raise ValueError("partial_fit needs at least 2 classes in `classes`.")
        else:
            classes = self.classes_
        if self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit, whose chunks do not "
                "show the class frequencies. Pass "
                "compute_class_weight('balanced', classes=classes, y=y) as a dict instead."
            )
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight, reset=first_call)
        unknown = np.setdiff1d(np.unique(y), classes)
        if unknown.size:
            raise ValueError(f"y contains labels {unknown!r} not in classes {classes!r}.")
        y_enc = _encode(y, classes)
        weights = _effective_weights(self.class_weight, classes, y_enc, y, sample_weight)
        self._fit_epochs(
            X,
            y_enc,
            classes,
            weights,
            hook_data=(X, y, sample_weight),
            previous_module=None if first_call else self.module_,
            solver_state=None if first_call else self._solver_state,
            generator=None if first_call else self._generator,
            max_iter=1,
            partial=True,
        )
        return self

    def _fit_epochs(self, X, y_enc, classes, *args, problem=None, **kwargs):
        """Train, then commit the fitted state; on any error ``self`` is untouched.

        Small work runs on one torch thread (:mod:`sktorch_lr._threads`).
        """
        work = np.inf if problem is not None else _work(X, 2 if len(classes) == 2 else len(classes))
        with threads_for(work):
            self._fit_epochs_threaded(X, y_enc, classes, *args, problem=problem, **kwargs)

    def _fit_epochs_threaded(
        self,
        X,
        y_enc,
        classes,
        sample_weight,
        *,
        hook_data,
        previous_module,
        solver_state,
        generator,
        max_iter,
        partial,
        problem=None,
    ):
        auto = self.lr == "auto"
        binary = len(classes) == 2
        n_outputs = 1 if binary else len(classes)
        if problem is None:
            device = resolve_device(self.device)
            dtype = X.dtype if is_tensor(X) else torch_dtype(X.dtype)
            data = TrainingData(X, y_enc, sample_weight, binary=binary, device=device, dtype=dtype)
            if data.weight_sum <= 0:
                raise ValueError("The sample weights sum to zero; at least one must be positive.")
            penalty = penalty_strengths(self.C, self.l1_ratio, data.weight_sum)
            # Full fits with lr="auto" work in the centred parametrisation; partial_fit
            # sees one chunk at a time, whose mean changes from call to call.
            problem = Problem(
                data, penalty, fit_intercept=self.fit_intercept, centred=auto and not partial
            )
        else:  # a dask problem: the data stay on the workers
            data, penalty = problem.data, problem.penalty
            device, dtype = data.device, data.dtype
        n_samples, n_features = data.n_samples, data.n_features

        def new_module(parameters=None):
            return _module_with(
                parameters,
                n_features,
                n_outputs,
                bias=self.fit_intercept,
                dtype=dtype,
                device=device,
            )

        module = new_module(None if previous_module is None else previous_module.parameters())
        params = list(module.parameters())
        problem.to_solver(params[0], params[1] if self.fit_intercept else None)
        # Dask input (X is None: the problem holds it) is fitted full batch, exactly.
        batch_size = None if partial or X is None else self._resolved_batch_size(n_samples)
        stochastic = partial or batch_size is not None
        kind = choose_preconditioner(n_features, n_outputs, l1=penalty.l1 > 0, partial=partial)
        nnz_per_row = X.nnz / max(n_samples, 1) if sp.issparse(X) else n_features
        ratio = measure_cost_ratio(
            kind, n_samples, nnz_per_row, n_features, n_outputs, min(n_samples, CURVATURE_MAX_ROWS)
        )

        def retune(state, stochastic=False, low=None):
            """Adopt the step rule of a new ``state.preconditioner`` (or a new ``low``)."""
            if low is None:
                low, state.high = preconditioned_spectrum(
                    state.preconditioner.kind,
                    lambda: problem.top_eigenvalue(params, state.preconditioner),
                )
            state.low = low if self.momentum == "auto" and not stochastic else None
            lr, momentum = step_rule(
                low, state.high, self.momentum, nesterov=self.nesterov, stochastic=stochastic
            )
            with torch.no_grad():
                if state.buffers and state.lr != lr:
                    # Keep the velocity lr * buffer.
                    torch._foreach_mul_(state.buffers, state.lr / lr)
            state.lr = state.lr_max = lr
            state.momentum = momentum
            state.nesterov = self.nesterov and momentum > 0

        if solver_state is None:
            solver_state = SolverState(
                lr=float(self.lr) if not auto else 1.0,
                momentum=_fixed_momentum(self.momentum),
                nesterov=self.nesterov,
                adaptive=auto and not partial,
            )
            if auto:
                solver_state.preconditioner = problem.measure(params, kind)
                retune(solver_state, stochastic)
        else:
            solver_state = _state_on(copy.deepcopy(solver_state), device)
            if solver_state.adaptive:
                # A full fit's state: partial_fit takes none of its full-batch rules,
                # and its metric and momentum were in the centred parametrisation.
                solver_state.adaptive = False
                solver_state.preconditioner = None
                solver_state.buffers = []
            if not auto:
                # set_params(lr=..., momentum=...) between calls takes effect.
                solver_state.preconditioner = None
                solver_state.lr = solver_state.lr_max = float(self.lr)
                solver_state.momentum = _fixed_momentum(self.momentum)
            calls = solver_state.partial_fit_calls
            if auto and (calls & (calls - 1) == 0 or solver_state.preconditioner is None):
                # Calls 1, 2, 4, 8, ...: follow the curvature as the fit sharpens.
                solver_state.preconditioner = problem.measure(params, kind)
                retune(solver_state, True)
        if partial:
            solver_state.partial_fit_calls += 1
        if generator is None:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            generator = torch.Generator().manual_seed(int(seed))
        else:
            generator = copy.deepcopy(generator)

        def snapshot(current):
            """Fitted attributes at ``current``, for callbacks' ``fitted_estimator``."""
            copies = [p.detach().clone() for p in current]
            problem.to_model(copies[0], copies[1] if self.fit_intercept else None)
            copy_ = new_module(copies)
            return {"classes_": classes, "module_": copy_}

        callbacks = fit_callbacks(self, *hook_data, max_iter, snapshot)
        result = solve(
            params,
            problem,
            solver_state,
            max_iter=max_iter,
            tol=self.tol,
            batch_size=batch_size,
            generator=generator,
            check_convergence=not partial,
            track_gradients=self.track_gradients,
            preconditioner_kind=kind,
            measure_ratio=ratio,
            retune=retune,
            callbacks=callbacks,
            verbose=self.verbose,
        )
        problem.to_model(params[0], params[1] if self.fit_intercept else None)
        # Where float32 sums stalled and training went on in float64 (refine_precision),
        # the model's float32 coefficients may not hold what training reached.
        float32_gap = None
        if problem.float64_sums and not partial and result.loss_curve:
            reached = result.loss_curve[-1]
            model_value = problem.model_objective(
                params[0].detach(), params[1].detach() if self.fit_intercept else None
            )
            if model_value - reached > FLOAT32_MODEL_GAP * max(1.0, abs(reached)):
                float32_gap = (model_value, reached)
        if partial:
            solver_state.preconditioner = solver_state.preconditioner if auto else None

        # Commit: nothing above touched self.
        self.classes_ = classes
        self.module_ = module
        self.lr_ = solver_state.lr
        self.momentum_ = solver_state.momentum
        self._solver_state = solver_state
        self._generator = generator
        continuing = partial and hasattr(self, "n_iter_") and previous_module is not None
        history = None
        if result.history is not None:
            history = {k: np.asarray(v) for k, v in result.history.items() if len(v)}
            if not self.fit_intercept:
                history["intercept"] = np.zeros((result.n_iter, n_outputs))
            previous_history = getattr(self, "gradient_history_", None)
            if continuing and previous_history is not None:
                history = {k: np.concatenate([previous_history[k], v]) for k, v in history.items()}
        if continuing:
            self.n_iter_ += result.n_iter
            self.loss_curve_ = self.loss_curve_ + result.loss_curve
        else:
            self.n_iter_ = result.n_iter
            self.loss_curve_ = result.loss_curve
        if history is not None and (not continuing or "gradient_history_" in vars(self)):
            self.gradient_history_ = history
        else:
            # One row per epoch or nothing: a history that missed epochs would lie.
            vars(self).pop("gradient_history_", None)
        if callbacks is not None:
            callbacks.fit_end()
        short = not partial and not result.converged and not result.stopped and self.tol > 0
        if short:
            measure = "Newton decrement" if auto else "largest gradient entry"
            if result.stalled:
                precision = str(dtype).replace("torch.", "")
                why = (
                    f"no step lowers the objective in {precision} precision any more, but the "
                    f"{measure} is {result.decrement:.3g}, above tol={self.tol:g}. "
                    + ("Train in float64 or use" if dtype != torch.float64 else "Use")
                    + " a larger tol."
                )
            else:
                why = (
                    f"it did not converge in max_iter={self.max_iter} epochs: the {measure} "
                    f"is {result.decrement:.3g}, above tol={self.tol:g}. Increase max_iter"
                    + ("." if auto else ", or use lr='auto'.")
                )
            warnings.warn(
                f"TorchLogisticRegression stopped early: {why}",
                ConvergenceWarning,
                stacklevel=_caller_stacklevel(),
            )

        if float32_gap is not None and not short:  # else the warning above said it
            warnings.warn(
                "TorchLogisticRegression: the fitted float32 model's objective is "
                f"{float32_gap[0]:.6g}, above the {float32_gap[1]:.6g} that training reached "
                "with float64 sums: float32 cannot hold these coefficients (large "
                "coefficients on features far from zero cancel in the intercept past "
                "float32's digits). Train in float64.",
                ConvergenceWarning,
                stacklevel=_caller_stacklevel(),
            )

    def _resolved_batch_size(self, n_samples):
        if self.batch_size == "auto":
            return None if n_samples <= AUTO_FULL_BATCH_MAX else AUTO_BATCH_SIZE
        if self.batch_size is None or self.batch_size >= n_samples:
            return None
        return self.batch_size

    def _fitted_penalty(self):
        return self.C, self.l1_ratio

    def _final_n_iter(self):
        return self.n_iter_


# ---------------------------------------------------------------- helpers


def _check_parameter_pairs(est):
    if est.nesterov and est.lr != "auto" and est.momentum == 0:
        raise ValueError("nesterov=True requires momentum > 0 when lr is given.")


def _fixed_momentum(momentum):
    """The momentum a float ``lr`` runs with: as given, or the lesson's 0.9 for "auto"."""
    return STOCHASTIC_MOMENTUM if momentum == "auto" else float(momentum)


def _compatible(est, classes, n_features):
    return (
        hasattr(est, "module_")
        and np.array_equal(est.classes_, classes)
        and est.coef_.shape[1] == n_features
        and (est.module_.linear.bias is not None) == est.fit_intercept
    )


def _dask_class_weight(class_weight, classes, y, sample_weight):
    """Class weights per encoded class for dask input (``"balanced"`` counts by dask)."""
    import dask.array as da

    if class_weight is None:
        return None
    if class_weight == "balanced":
        enc = da.map_blocks(np.searchsorted, classes, y, dtype=np.int64)
        counts = da.bincount(enc, weights=sample_weight, minlength=len(classes)).compute()
        return _balanced_class_weight(counts)
    cw = compute_class_weight(class_weight, classes=classes, y=classes)
    if not np.isfinite(cw).all():
        raise ValueError(f"class_weight contains NaN or infinity: {class_weight!r}.")
    return cw
