"""The lesson's data set: two 2-D Gaussian classes."""

import numbers

import numpy as np
import torch

from ._base import _check_type


def make_lesson_data(n_per_class=100, *, mean=1.7, bias=1.0, random_state=10):
    """Two 2-D Gaussian classes, exactly as the lesson draws them.

    Class 0 is ``N(mean, 1) + bias`` and class 1 is ``N(-mean, 1) + bias`` in
    each coordinate. With ``random_state=10`` (the lesson's
    ``torch.manual_seed(10)``) the points are the lesson's own, drawn from a
    private :class:`torch.Generator` so torch's global generator is untouched.

    Parameters
    ----------
    n_per_class : int, default=100
    mean : float, default=1.7
    bias : float, default=1.0
    random_state : int, default=10

    Returns
    -------
    X : ndarray of shape (2 * n_per_class, 2), float32
    y : ndarray of shape (2 * n_per_class,), float32 (0. then 1.)

    Examples
    --------
    >>> from sktorch_lr.datasets import make_lesson_data
    >>> X, y = make_lesson_data()
    >>> X.shape, y.mean()
    ((200, 2), np.float32(0.5))
    """
    _check_type(n_per_class, "n_per_class", numbers.Integral, "an integer")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class!r}.")
    _check_type(mean, "mean", numbers.Real, "a number")
    _check_type(bias, "bias", numbers.Real, "a number")
    _check_type(random_state, "random_state", numbers.Integral, "an integer seed")
    gen = torch.Generator().manual_seed(int(random_state))
    ones = torch.ones(n_per_class, 2)
    x0 = torch.normal(mean * ones, 1, generator=gen) + bias
    x1 = torch.normal(-mean * ones, 1, generator=gen) + bias
    X = torch.cat((x0, x1), 0).numpy()
    y = np.concatenate([np.zeros(n_per_class), np.ones(n_per_class)]).astype(np.float32)
    return X, y
