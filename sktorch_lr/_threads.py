"""Small work runs on one thread.

Torch's intra-op thread pool splits even tiny kernels across every core; when
another process (or scikit-learn's own BLAS threads in the same pipeline) keeps
one of them busy, each kernel waits for the slowest thread and a small fit runs
several times slower. Work below :data:`SMALL_WORK` multiply-adds per pass over
the data gains nothing from threads anyway, so it runs on one, the way
scikit-learn limits BLAS with ``threadpool_limits``. Torch's setting is global
to the process: it is restored when the last of any concurrent small fits
ends, and it is only lowered while one runs.
"""

import contextlib
import threading

import torch

# Multiply-adds per epoch (rows x non-zeros per row x outputs) below which a fit
# or a prediction runs single-threaded.
SMALL_WORK = 2_000_000

_lock = threading.Lock()
_active = 0
_saved = None


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
