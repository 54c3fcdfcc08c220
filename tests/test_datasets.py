import numpy as np
import pytest
import torch

from sktorch_lr.datasets import make_lesson_data


def test_lesson_data_is_the_lessons_own_draw():
    torch.manual_seed(10)
    state = torch.get_rng_state()
    n = torch.ones(100, 2)
    x0 = torch.normal(1.7 * n, 1) + 1
    x1 = torch.normal(-1.7 * n, 1) + 1
    torch.set_rng_state(state)
    X, y = make_lesson_data()
    np.testing.assert_array_equal(X, torch.cat((x0, x1)).numpy())
    np.testing.assert_array_equal(y, np.r_[np.zeros(100), np.ones(100)])
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not used


@pytest.mark.parametrize("n, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_lesson_data_refuses_a_bad_size(n, error):
    with pytest.raises(error, match="n_per_class"):
        make_lesson_data(n)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mean": "1.7"}, "mean"), ({"bias": None}, "bias"), ({"random_state": "x"}, "seed")],
)
def test_lesson_data_refuses_bad_parameters(kwargs, match):
    with pytest.raises(TypeError, match=match):
        make_lesson_data(**kwargs)
