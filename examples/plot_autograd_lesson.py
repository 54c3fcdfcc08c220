"""
The lesson's autograd facts
===========================

Part one of the lesson is about :mod:`torch.autograd`. Every value it prints is
reproduced here (and asserted in ``tests/test_autograd_lesson.py``).
"""

# %%
# ``y = (x + w)(w + 1)`` at ``w = 1, x = 2``: ``dy/dw = 2w + x + 1 = 5``.
import matplotlib.pyplot as plt
import torch

w = torch.tensor([1.0], requires_grad=True)
x = torch.tensor([2.0], requires_grad=True)
a = torch.add(w, x)
b = torch.add(w, 1)
y = torch.mul(a, b)
y.backward()
print("dy/dw =", w.grad.item())

# %%
# Weighted outputs: ``loss = [y0, y1]`` with weights ``[1, 2]`` gives ``1 * 5 + 2 * 2 = 9``.
w = torch.tensor([1.0], requires_grad=True)
a, b = torch.add(w, x), torch.add(w, 1)
loss = torch.cat([torch.mul(a, b), torch.add(a, b)])
loss.backward(gradient=torch.tensor([1.0, 2.0]))
print("weighted gradient =", w.grad.item())

# %%
# Higher derivatives of ``x**2`` at 3 with ``create_graph=True``: 6, 2, 0.
# ``torch.autograd.grad`` returns a tuple.
x3 = torch.tensor([3.0], requires_grad=True)
g1 = torch.autograd.grad(x3**2, x3, create_graph=True)
g2 = torch.autograd.grad(g1[0], x3, create_graph=True)
g3 = torch.autograd.grad(g2[0], x3)
print([g[0].item() for g in (g1, g2, g3)], type(g3))

# %%
# Gradients accumulate until zeroed (the notes' ``grad.zero_()`` must be ``w.grad.zero_()``).
accumulated, zeroed = [], []
for store, zero in ((accumulated, False), (zeroed, True)):
    w = torch.tensor([1.0], requires_grad=True)
    for _ in range(4):
        torch.mul(torch.add(w, x), torch.add(w, 1)).backward()
        store.append(w.grad.item())
        if zero:
            w.grad.zero_()
print("without zeroing:", accumulated, " with zeroing:", zeroed)

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(range(1, 5), accumulated, "o-", label="without w.grad.zero_()")
ax.plot(range(1, 5), zeroed, "s-", label="with w.grad.zero_()")
ax.set_xlabel("backward pass")
ax.set_ylabel("w.grad")
ax.set_xticks(range(1, 5))
ax.set_title("Gradients accumulate unless they are zeroed")
ax.legend()

# %%
# Tensors computed from a leaf that requires grad require grad themselves, and an
# in-place operation on such a leaf is an error (backward needs its value).
w = torch.tensor([1.0], requires_grad=True)
y = torch.mul(torch.add(w, x), torch.add(w, 1))
print("requires_grad:", y.requires_grad, " is_leaf:", w.is_leaf, y.is_leaf)
try:
    w.add_(1)
except RuntimeError as err:
    print("in-place on a leaf:", str(err).split(".")[0])
plt.show()
