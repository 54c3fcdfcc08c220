"""scikit-learn's callback API (``sklearn.callback``, new in 1.9): one sub-task per epoch.

``set_callbacks(ProgressBar(), ScoringMonitor(...))`` works on the estimator
alone and nested in ``Pipeline`` / ``GridSearchCV``, as for
``LogisticRegression(solver="lbfgs")``, whose ``fit`` is one task with one
sub-task per L-BFGS iteration; here it is one sub-task per epoch. On a
scikit-learn without ``sklearn.callback`` the mixin is an empty class and
nothing here runs.
"""

try:
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # scikit-learn < 1.9

    class CallbackSupportMixin:
        """Stand-in for scikit-learn < 1.9, which has no callback API."""


HAS_CALLBACKS = hasattr(CallbackSupportMixin, "_init_callback_context")


class FitCallbacks:
    """The fit task and its per-epoch sub-tasks, forwarded to the callbacks' hooks.

    Parameters
    ----------
    estimator : TorchLogisticRegression
    X, y, sample_weight
        The training data, passed to the hooks as scikit-learn passes them.
    max_epochs : int
        Sub-tasks at most (``max_iter``).
    snapshot : callable or None
        ``params -> dict`` of the fitted attributes (``coef_``, ``intercept_``,
        ``module_``, ...) that make a ready-to-predict copy of the estimator at
        the current parameters, for hooks that ask for ``fitted_estimator``;
        None where no single model stands for the state (the batch of
        :class:`~sktorch_lr.TorchLogisticRegressionCV`).
    """

    def __init__(self, estimator, X, y, sample_weight, max_epochs, snapshot):
        self.estimator = estimator
        self.X, self.y = X, y
        self.metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        self.snapshot = snapshot
        self.ctx = estimator._init_callback_context(max_subtasks=max_epochs)
        self.ctx.call_on_fit_task_begin(estimator=estimator, X=X, y=y, metadata=self.metadata)
        # Without callbacks (none set, none propagated) the per-epoch hooks are skipped.
        self.active = bool(getattr(estimator, "_skl_callbacks", None))
        self.epoch_ctx = None

    def _hooks(self, params):
        return dict(
            estimator=self.estimator,
            X=self.X,
            y=self.y,
            metadata=self.metadata,
            reconstruction_attributes=(
                None if self.snapshot is None else lambda: self.snapshot(params)
            ),
        )

    def epoch_begin(self, params):
        if self.active:
            self.epoch_ctx = self.ctx.subcontext(task_name="epoch")
            self.epoch_ctx.call_on_fit_task_begin(**self._hooks(params))

    def epoch_end(self, params):
        """Run the end hooks; True when a callback asks training to stop."""
        if not self.active:
            return False
        return bool(self.epoch_ctx.call_on_fit_task_end(**self._hooks(params)))

    def fit_end(self):
        self.ctx.call_on_fit_task_end(
            estimator=self.estimator,
            X=self.X,
            y=self.y,
            metadata=self.metadata,
            reconstruction_attributes={},
        )


def fit_callbacks(estimator, X, y, sample_weight, max_epochs, snapshot):
    """A :class:`FitCallbacks` for this fit; None without ``sklearn.callback`` or callbacks.

    With no callback set on the estimator and none propagated to it by a
    meta-estimator there is nothing to call, and the context is not built.
    """
    if not HAS_CALLBACKS or not (
        getattr(estimator, "_skl_callbacks", None) or hasattr(estimator, "_parent_callback_ctx")
    ):
        return None
    return FitCallbacks(estimator, X, y, sample_weight, max_epochs, snapshot)
