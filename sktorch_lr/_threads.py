"""Small work runs on one thread.

Torch's intra-op thread pool splits even tiny kernels across every core; when
another process (or scikit-learn's own BLAS threads in the same pipeline) keeps
one of them busy, each kernel waits for the slowest thread and a small fit runs
several times slower. Work below :data:`SMALL_WORK` multiply-adds per pass over
the data gains nothing from threads anyway, so it runs on one, the way
scikit-learn limits BLAS with ``threadpool_limits``. Torch's setting is global
to the process: it is restored when the last of any concurrent small fits
ends, and it is only lowered while one runs. The callers: fits
(``_estimator``, ``_batch``), predictions and ``X``'s check of values
(``_base``), the inspector's public methods (``inspection``), the
cross-validation's held-out accuracies (``_cv``) and Cholesky factors
(``_curvature``).
"""

import contextlib
import threading

import torch

# Multiply-adds per epoch (rows x non-zeros per row x outputs) below which a fit
# or a prediction runs single-threaded.
SMALL_WORK = 2_000_000
# Cholesky factorisations and solves of matrices up to this order run on one thread,
# whatever the fit's size: a batch of small factors gains nothing from a second one
# (144 factors of 151 x 151: 18 ms on one thread, 16 ms on two) and waits behind a
# busy core (46 ms a call while another process kept one core busy: a cross-validation
# of 120 x 150 with 12 classes took 10 s instead of 2); one factor of 1,001 gains
# (11 ms against 6 ms).
SMALL_FACTOR_ORDER = 512

_lock = threading.Lock()
_active = 0
_saved = None


def threads_for_factors(order):
    """:func:`threads_for` a Cholesky factorisation or solve of matrices of this order."""
    return threads_for(0 if order <= SMALL_FACTOR_ORDER else SMALL_WORK)


@contextlib.contextmanager
def threads_for(work):
    """Run the block on one torch thread if ``work`` is small; restore the setting after."""
    global _active, _saved
    if work >= SMALL_WORK:
        yield
        return
    with _lock:
        if _active == 0:
            _saved = torch.get_num_threads()
            if _saved != 1:
                torch.set_num_threads(1)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                if _saved != 1:
                    torch.set_num_threads(_saved)
                _saved = None
