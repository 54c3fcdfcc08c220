"""What every fitted torch logistic regression offers, and the input checks both estimators share.

:class:`TorchLinearClassifier` is the fitted model: ``coef_`` and
``intercept_`` over the ``module_``'s memory, the predictions, ``score``,
``to_sklearn``, pickling, and the input validation of ``fit``.
:class:`~sktorch_lr.TorchLogisticRegression` and
:class:`~sktorch_lr.TorchLogisticRegressionCV` differ only in how they train
(one problem, or every fold and ``C`` at once) and in which ``C`` the fitted
model has (:meth:`TorchLinearClassifier._fitted_penalty`).
"""

import contextlib
import copy
import math
import os
import sys

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import assert_all_finite, column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from ._callbacks import CallbackSupportMixin
from ._dask import is_dask_collection
from ._data import TrainingData, as_tensor, is_tensor, training_layout
from ._module import LogisticRegressionModule
from ._objective import linear_logits, penalty_strengths
from ._threads import threads_for

# Sample weights summing below this (subnormal territory) cannot normalise the objective.
MIN_WEIGHT_SUM = 1e-290
# Features larger than this overflow float64 once squared (the curvature): rejected with
# advice instead of a raw linear-algebra error.
MAX_ABS_FEATURE = 1e150


class TorchLinearClassifier(CallbackSupportMixin, ClassifierMixin, BaseEstimator):
    """The fitted model of a torch logistic regression (a base class, not an estimator).

    Subclasses train ``module_`` (a :class:`~sktorch_lr._module.LogisticRegressionModule`)
    and set ``classes_``; everything a fitted model offers is here. They say
    which objective the fitted model minimises with :meth:`_fitted_penalty`.
    """

    def _fitted_penalty(self):
        """``(C, l1_ratio)`` of the fitted model's objective."""
        raise NotImplementedError

    def _final_n_iter(self):
        """The epochs of the fit that produced ``coef_`` (for ``to_sklearn``)."""
        raise NotImplementedError

    def _training_problem(self, X, y, sample_weight=None, *, dtype=torch.float64, device=None):
        """``(data, penalty)`` of a fitted estimator's objective on ``(X, y)``.

        The same validation, label encoding, class weights and penalty scaling
        as ``fit``; :mod:`sktorch_lr.inspection` evaluates the objective on it.
        """
        check_is_fitted(self)
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight, reset=False)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels {unknown!r} not in classes_ {self.classes_!r}.")
        y_enc = _encode(y, self.classes_)
        weights = _effective_weights(self.class_weight, self.classes_, y_enc, y, sample_weight)
        if device is None:
            device = self.module_.linear.weight.device
        data = TrainingData(
            X, y_enc, weights, binary=len(self.classes_) == 2, device=device, dtype=dtype
        )
        return data, penalty_strengths(*self._fitted_penalty(), data.weight_sum)

    # ------------------------------------------------------- fitted model

    @property
    def coef_(self):
        """The module's weight as numpy, sharing its memory on the CPU (one source of truth)."""
        return self.module_.linear.weight.detach().cpu().numpy()

    @coef_.setter
    def coef_(self, value):
        weight = self.module_.linear.weight
        value = np.array(value)  # a writable copy: torch warns on read-only memory
        if value.shape != tuple(weight.shape):
            raise ValueError(
                f"coef_ must have shape {tuple(weight.shape)}, got an array of shape {value.shape}."
            )
        with torch.no_grad():
            weight.copy_(torch.as_tensor(value, dtype=weight.dtype))

    @property
    def intercept_(self):
        """The module's bias as numpy (zeros without one), sharing its memory on the CPU."""
        bias = self.module_.linear.bias
        if bias is None:
            weight = self.module_.linear.weight
            return np.zeros(weight.shape[0], dtype=weight.detach().cpu().numpy().dtype)
        return bias.detach().cpu().numpy()

    @intercept_.setter
    def intercept_(self, value):
        bias = self.module_.linear.bias
        n_outputs = self.module_.linear.weight.shape[0]
        value = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (n_outputs,)))
        if bias is None:
            if np.any(value != 0):
                raise ValueError("intercept_ must stay zero when fit_intercept=False.")
            return
        with torch.no_grad():
            bias.copy_(torch.as_tensor(value, dtype=bias.dtype))

    # -------------------------------------------------------------- predict

    def decision_function(self, X):
        """Logits ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray (or Tensor for tensor input) of shape (n_samples,) or (n_samples, K)
            For two classes, the log-odds of ``classes_[1]``.
        """
        if is_dask_collection(X):
            return self._dask_map(X, "decision_function")
        logits, tensor_in = self._logits(X)
        if logits.shape[1] == 1:
            logits = logits[:, 0]
        return logits if tensor_in else logits.cpu().numpy()

    def predict_proba(self, X):
        """Class probabilities: sigmoid (two classes) or softmax of the logits.

        Returns
        -------
        proba : ndarray (or Tensor for tensor input) of shape (n_samples, n_classes)
        """
        if is_dask_collection(X):
            return self._dask_map(X, "predict_proba")
        logits, tensor_in = self._logits(X)
        with torch.inference_mode():
            if logits.shape[1] == 1:
                proba = torch.cat([torch.sigmoid(-logits), torch.sigmoid(logits)], dim=1)
            else:
                proba = torch.softmax(logits, dim=1)
        return proba if tensor_in else proba.cpu().numpy()

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably from the logits.

        Returns
        -------
        log_proba : ndarray (or Tensor for tensor input) of shape (n_samples, n_classes)
        """
        if is_dask_collection(X):
            return self._dask_map(X, "predict_log_proba")
        logits, tensor_in = self._logits(X)
        with torch.inference_mode():
            if logits.shape[1] == 1:
                out = torch.cat(
                    [
                        torch.nn.functional.logsigmoid(-logits),
                        torch.nn.functional.logsigmoid(logits),
                    ],
                    dim=1,
                )
            else:
                out = torch.log_softmax(logits, dim=1)
        return out if tensor_in else out.cpu().numpy()

    def predict(self, X):
        """Predicted class labels.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            A Tensor on the module's device for tensor input with numeric classes.
        """
        if is_dask_collection(X):
            return self._dask_map(X, "predict")
        logits, tensor_in = self._logits(X)
        with torch.inference_mode():
            if logits.shape[1] == 1:
                idx = (logits[:, 0] > 0).long()
            else:
                idx = logits.argmax(dim=1)
        if tensor_in and self.classes_.dtype.kind in "biuf":
            return torch.as_tensor(self.classes_, device=idx.device)[idx]
        return self.classes_[idx.cpu().numpy()]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``(X, y)``, as ``ClassifierMixin.score``.

        Parameters
        ----------
        X : {array-like, sparse matrix, Tensor} of shape (n_samples, n_features)
        y : array-like or Tensor of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        from sklearn.metrics import accuracy_score

        if is_dask_collection(X):
            correct = self._dask_map(X, "predict") == y
            if sample_weight is None:
                return correct.mean()
            return (correct * sample_weight).sum() / sample_weight.sum()
        y_pred = self.predict(X)
        if is_tensor(y_pred):
            y_pred = y_pred.cpu().numpy()
        return accuracy_score(_labels_to_numpy(y), y_pred, sample_weight=_to_numpy(sample_weight))

    def _logits(self, X):
        check_is_fitted(self)
        tensor_in = is_tensor(X)
        X = self._validate_X(X, reset=False)
        weight, bias = self.module_.linear.weight, self.module_.linear.bias
        # float64 rows stay float64 (a float32 model's logits of rows beyond
        # float32's range would overflow); finite logits keep probabilities finite.
        wide = X.dtype in (np.float64, torch.float64) and weight.dtype == torch.float32
        dtype = torch.float64 if wide else weight.dtype
        Xt = as_tensor(X, weight.device, dtype)
        with torch.inference_mode(), threads_for(_work(X, weight.shape[0])):
            logits = linear_logits(Xt, weight.to(dtype), None if bias is None else bias.to(dtype))
            big = torch.finfo(dtype).max
            return torch.nan_to_num(logits, nan=0.0, posinf=big, neginf=-big), tensor_in

    # --------------------------------------------------------------- export

    def to_sklearn(self):
        """A fitted :class:`~sklearn.linear_model.LogisticRegression` with these coefficients.

        Its ``predict``, ``predict_proba`` and ``decision_function`` equal
        ours (same ``coef_``, ``intercept_`` and ``classes_``; the same
        sigmoid / softmax), so the tools that know scikit-learn's estimator --
        skl2onnx, sklearn-pmml, model registries -- can deploy the model. Its
        parameters (``C``, ``l1_ratio``, ``fit_intercept``, ``class_weight``,
        ``tol``, ``max_iter``) are ours, with ``solver="saga"`` when an L1 part
        needs it, so refitting it solves the same problem.

        Returns
        -------
        estimator : sklearn.linear_model.LogisticRegression
        """
        from sklearn.linear_model import LogisticRegression

        check_is_fitted(self)
        C, l1_ratio = self._fitted_penalty()
        params = dict(
            C=C,
            fit_intercept=self.fit_intercept,
            class_weight=self.class_weight,
            tol=self.tol,
            max_iter=self.max_iter,
            solver="saga" if l1_ratio > 0 else "lbfgs",
        )
        if "penalty" in LogisticRegression().get_params() and _penalty_is_explicit():
            # scikit-learn < 1.8 chooses the penalty by name.
            params["penalty"] = {0.0: "l2", 1.0: "l1"}.get(float(l1_ratio), "elasticnet")
        params["l1_ratio"] = l1_ratio
        est = LogisticRegression(**params)
        est.classes_ = self.classes_.copy()
        est.coef_ = self.coef_.copy()
        est.intercept_ = self.intercept_.copy()
        est.n_features_in_ = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            est.feature_names_in_ = self.feature_names_in_.copy()
        est.n_iter_ = np.array([self._final_n_iter()], dtype=np.int32)
        return est

    # ----------------------------------------------------------- validation

    def _validate_X(self, X, reset):
        if is_tensor(X):
            return _validate_tensor(self, X, reset)
        X = validate_data(
            self,
            X,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32],
            reset=reset,
        )
        return _sparse_to_csr(X)

    def _validate_fit_input(self, X, y, sample_weight, reset):
        # X's values (finite, not too large) are checked in one pass at the end.
        if is_tensor(X):
            X = _validate_tensor(self, X, reset, check_values=False)
            y = column_or_1d(_labels_to_numpy(y), warn=True)
            check_consistent_length(X, y)
        else:
            X, y = validate_data(
                self,
                X,
                y,
                accept_sparse=["csr", "csc", "coo"],
                dtype=[np.float64, np.float32],
                reset=reset,
                ensure_all_finite=False,
            )
            X = _sparse_to_csr(X)
        check_classification_targets(y)
        X = training_layout(X)
        _check_values(X)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                _to_numpy(sample_weight),
                np.empty((X.shape[0], 0)),
                dtype=np.float64,
                ensure_non_negative=True,
            )
        return X, y, sample_weight

    # -------------------------------------------------------------- the rest

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = True
        return tags

    def __getstate__(self):
        """Pickle with every tensor on the CPU, so a GPU-fitted model loads anywhere."""
        state = super().__getstate__()
        if "module_" in state and state["module_"].linear.weight.device.type != "cpu":
            state["module_"] = _module_to_cpu(state["module_"])
        if "_solver_state" in state:
            state["_solver_state"] = _state_on(
                copy.copy(state["_solver_state"]), torch.device("cpu")
            )
        return state


# ---------------------------------------------------------------- helpers


def _penalty_is_explicit():
    """True on scikit-learn < 1.8, where LogisticRegression's ``penalty`` picks the norm."""
    import sklearn
    from sklearn.utils.fixes import parse_version

    return parse_version(sklearn.__version__).release < (1, 8)


def _work(X, n_outputs):
    """Multiply-adds of one pass over ``X`` (what decides single-threading)."""
    nnz = X.nnz if sp.issparse(X) else X.shape[0] * X.shape[1]
    return nnz * (1 if n_outputs <= 2 else n_outputs)


# The attributes validate_data(reset=True) sets before training starts.
_VALIDATION_ATTRIBUTES = ("n_features_in_", "feature_names_in_")


@contextlib.contextmanager
def _unchanged_on_failure(est):
    """Restore what validation set on ``est`` if the fit then fails (or is interrupted).

    Training commits every fitted attribute at its end; only the validation
    attributes are written earlier, so these are all a failure must undo.
    """
    saved = {name: vars(est)[name] for name in _VALIDATION_ATTRIBUTES if name in vars(est)}
    try:
        yield
    except BaseException:
        for name in _VALIDATION_ATTRIBUTES:
            vars(est).pop(name, None)
        vars(est).update(saved)
        raise


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_SKLEARN_BASE = os.path.join("sklearn", "base.py")


def _caller_stacklevel():
    """The ``stacklevel`` of the first frame outside this package and ``sklearn.base``.

    So that warnings point at the user's line, not at ``_fit_context``'s wrapper.
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_PACKAGE_DIR) or name.endswith(_SKLEARN_BASE)):
            return level
        frame = frame.f_back
        level += 1
    return 1


def _encode(y, classes):
    """Targets as training uses them: 0/1 (``y == classes[1]``) or class indices.

    Cheaper than ``np.unique(..., return_inverse=True)``, whose sort costs
    ~40 MB on a million labels.
    """
    if len(classes) == 2:
        return (y == classes[1]).view(np.int8)
    return np.searchsorted(classes, y)


def _labels_to_numpy(y):
    if is_tensor(y):
        return y.detach().cpu().numpy()
    return y


def _to_numpy(v):
    if v is None or not is_tensor(v):
        return v
    return v.detach().cpu().numpy()


def _sparse_to_csr(X):
    return X.tocsr() if sp.issparse(X) else X


def _validate_tensor(est, X, reset, check_values=True):
    """The checks ``validate_data`` does, for a torch tensor (kept on its device);
    without ``check_values``, not the finiteness (the caller's :func:`_check_values` does)."""
    if X.layout != torch.strided:
        raise ValueError("Sparse torch tensors are not supported; pass a scipy sparse matrix.")
    if X.device.type == "meta":
        raise ValueError("X is a tensor on the 'meta' device, which holds no data.")
    X = X.detach()  # never write into the caller's X.grad
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D tensor, got a {X.ndim}D tensor of shape {tuple(X.shape)}.")
    if X.shape[0] < 1:
        raise ValueError(f"Found a tensor with {X.shape[0]} sample(s); a minimum of 1 is required.")
    if X.shape[1] < 1:
        raise ValueError(
            f"Found a tensor with 0 feature(s) (shape={tuple(X.shape)}); a minimum of 1 is "
            "required."
        )
    if X.is_complex():
        raise ValueError("Complex data not supported.")
    if X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else torch.float64)
    if check_values and not bool(torch.isfinite(X).all()):
        raise ValueError(_NOT_FINITE)
    n_features = X.shape[1]
    if reset:
        est.n_features_in_ = n_features
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif n_features != est.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input."
        )
    return X


def _two_or_more(classes):
    if len(classes) < 2:
        raise ValueError(
            "This solver needs samples of at least 2 classes in the data, but the data "
            f"contains only one class: {classes[0]!r}."
        )
    return classes


_NOT_FINITE = "Input X contains NaN or infinity."


def _check_values(X):
    """What fit needs of ``X``'s values, from its extremes in one pass: all finite
    (scikit-learn's error otherwise), and none so large that the curvature
    overflows float64 (a clear error).

    The pass validation's finiteness check would make is the one this makes:
    1M x 100 float32 took 26 ms for that check and 20 ms for this one. ``X`` is
    sparse or in :func:`~sktorch_lr._data.training_layout`.
    """
    if sp.issparse(X):
        largest = float(np.abs(X.data).max()) if X.nnz else 0.0
    elif (X.numel() if is_tensor(X) else X.size) == 0:
        largest = 0.0
    else:
        # Both ends in one pass on torch's threads, no temporary copy of X
        # (1M x 100 float32: 15 ms against 52 ms for numpy's max and min).
        view = X.detach() if is_tensor(X) else torch.from_numpy(X)
        if view.stride(0) < view.stride(1):
            # Column-major memory (Fortran order: what pandas' to_numpy gives) in
            # its own order: torch's reduction strides across it otherwise
            # (200,000 x 50 float64: 60 ms against 2.3 ms).
            view = view.T
        # On one thread when small, as the fit's own kernels: waking the second
        # thread that the previous fit or prediction put to sleep costs more than
        # the pass (digits: 2.7 ms against 0.03 ms while another process kept a
        # core busy, once per fit of a grid search).
        with threads_for(view.numel()):
            lo, hi = torch.aminmax(view)
        largest = max(abs(float(lo)), abs(float(hi)))
    if not math.isfinite(largest) and not is_tensor(X):  # NaN propagates to both extremes
        assert_all_finite(X, input_name="X")  # raises scikit-learn's own message
    _check_largest(largest)


def _check_type(value, name, kind, expected):
    """A TypeError naming ``name`` unless ``value`` is a ``kind`` (``numbers.Integral``
    or ``numbers.Real``); ``True`` and ``False``, which Python counts as integers,
    are refused. ``expected`` is what the message asks for ("an integer", ...)."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {expected}, got {value!r}.")


def _check_largest(largest):
    """Errors for a non-finite largest ``|x|`` and for features so large that the
    curvature overflows float64 (also Dask's, from its one pass)."""
    if not math.isfinite(largest):
        raise ValueError(_NOT_FINITE)
    if largest > MAX_ABS_FEATURE:
        raise ValueError(
            f"X holds values as large as {largest:.3g}: their squares, which the curvature "
            "that lr='auto' measures is made of, overflow float64. Rescale the features "
            "(e.g. StandardScaler or MaxAbsScaler, or divide the large columns by a power "
            "of ten); the optimum's predictions do not change."
        )


def _balanced_class_weight(counts):
    """``"balanced"`` weights from each class's (weighted) count: scikit-learn's
    ``S / (n_classes * S_k)``, over the classes present.

    A class without (weighted) rows here -- a resample of the bootstrap, data given
    to the inspector, all its sample weights zero -- gets weight 0 instead of
    scikit-learn's division by zero, and the others are balanced among themselves,
    as a fit of these rows alone would balance them. The in-memory and the Dask
    fits both count and call this.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    return counts.sum() / (present.sum() * np.where(present, counts, np.inf))


def _effective_weights(class_weight, classes, y_enc, y, sample_weight):
    """``s_i = sample_weight_i * class_weight[y_i]``, or None when all ones.

    ``"balanced"`` counts each class by its sample weights, as scikit-learn's
    ``LogisticRegression`` does, over the classes present
    (:func:`_balanced_class_weight`). Raises a ValueError for non-finite class
    weights and for weights whose sum overflows or underflows float64.
    """
    if class_weight is None:
        weights = sample_weight
    else:
        if isinstance(class_weight, dict):
            values = np.asarray(list(class_weight.values()), dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError(f"class_weight contains NaN or infinity: {class_weight!r}.")
            if (values < 0).any():
                raise ValueError(f"class_weight must be non-negative: {class_weight!r}.")
        if isinstance(class_weight, str):  # "balanced"
            cw = _balanced_class_weight(
                np.bincount(y_enc, weights=sample_weight, minlength=len(classes))
            )
        else:
            cw = compute_class_weight(class_weight, classes=classes, y=y)
        per_sample = cw[y_enc]
        weights = per_sample if sample_weight is None else per_sample * sample_weight
    if weights is not None:
        with np.errstate(over="ignore"):
            total = float(np.sum(weights, dtype=np.float64))
        if not np.isfinite(total) or not np.isfinite(weights).all():
            raise ValueError(
                "The sample weights (times class_weight) sum to more than float64 can hold; "
                "divide them by a common factor (only their ratios matter)."
            )
        if 0 < total < MIN_WEIGHT_SUM:
            raise ValueError(
                f"The sample weights (times class_weight) sum to {total:.3g}, too small to "
                "normalise the objective accurately; multiply them by a common factor (only "
                "their ratios matter)."
            )
    return weights


def _module_with(parameters, n_features, n_outputs, *, bias, dtype, device):
    """A new module holding copies of ``parameters`` (zeros when None), on ``device``."""
    module = LogisticRegressionModule(n_features, n_outputs, bias=bias, dtype=dtype, device=device)
    if parameters is not None:
        with torch.no_grad():
            for new, old in zip(module.parameters(), parameters, strict=True):
                new.copy_(old)
    return module


def _module_to_cpu(module):
    weight = module.linear.weight
    return _module_with(
        module.parameters(),
        weight.shape[1],
        weight.shape[0],
        bias=module.linear.bias is not None,
        dtype=weight.dtype,
        device=torch.device("cpu"),
    )


def _state_on(state, device):
    state.buffers = [b.to(device) for b in state.buffers]
    return state
