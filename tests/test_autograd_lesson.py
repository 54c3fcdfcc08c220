"""The lesson's autograd facts (part 1 of the seed lesson), asserted as it prints them."""

import pytest
import torch


def _leaves():
    return torch.tensor([1.0], requires_grad=True), torch.tensor([2.0], requires_grad=True)


def test_dy_dw_is_5():
    w, x = _leaves()
    y = torch.mul(torch.add(w, x), torch.add(w, 1))  # (x + w)(w + 1)
    y.backward()
    assert w.grad.item() == 5.0  # 2w + x + 1


def test_retain_graph_allows_a_second_backward():
    w, x = _leaves()
    y = torch.mul(torch.add(w, x), torch.add(w, 1))
    y.backward(retain_graph=True)
    y.backward()
    assert w.grad.item() == 10.0
    w2, x2 = _leaves()
    y2 = torch.mul(torch.add(w2, x2), torch.add(w2, 1))
    y2.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y2.backward()


def test_weighted_backward_gives_9():
    w, x = _leaves()
    a, b = torch.add(w, x), torch.add(w, 1)
    loss = torch.cat([torch.mul(a, b), torch.add(a, b)], dim=0)  # [y0, y1]
    loss.backward(gradient=torch.tensor([1.0, 2.0]))
    assert w.grad.item() == 9.0  # 1 * 5 + 2 * 2


def test_higher_derivatives_of_x_squared():
    x = torch.tensor([3.0], requires_grad=True)
    y = torch.pow(x, 2)
    grad_1 = torch.autograd.grad(y, x, create_graph=True)
    grad_2 = torch.autograd.grad(grad_1[0], x, create_graph=True)
    grad_3 = torch.autograd.grad(grad_2[0], x)
    assert isinstance(grad_3, tuple)
    assert [g[0].item() for g in (grad_1, grad_2, grad_3)] == [6.0, 2.0, 0.0]


@pytest.mark.parametrize("zero_grad, expected", [(False, [5, 10, 15, 20]), (True, [5, 5, 5, 5])])
def test_gradients_accumulate_unless_zeroed(zero_grad, expected):
    w, x = _leaves()
    seen = []
    for _ in range(4):
        y = torch.mul(torch.add(w, x), torch.add(w, 1))
        y.backward()
        seen.append(w.grad.item())
        if zero_grad:
            w.grad.zero_()  # the notes wrote `grad.zero_()`, a bug
    assert seen == expected


def test_tensors_computed_from_a_leaf_require_grad():
    w, x = _leaves()
    a, b = torch.add(w, x), torch.add(w, 1)
    y = torch.mul(a, b)
    assert (a.requires_grad, b.requires_grad, y.requires_grad) == (True, True, True)
    assert w.is_leaf and not y.is_leaf


def test_in_place_on_a_leaf_that_requires_grad_raises():
    w, _ = _leaves()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(1)


def test_in_place_keeps_the_address_and_out_of_place_makes_a_new_tensor():
    a = torch.ones((1,))
    address = a.data_ptr()
    a = a + torch.ones((1,))
    assert a.data_ptr() != address and a.item() == 2.0
    address = a.data_ptr()
    a += torch.ones((1,))
    assert a.data_ptr() == address and a.item() == 3.0
