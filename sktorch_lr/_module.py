"""The torch model: the lesson's ``nn.Linear`` followed by a sigmoid (softmax for K > 2)."""

import torch
from torch import nn

from ._objective import linear_logits


class ZeroInitLinear(nn.Linear):
    """``nn.Linear`` whose parameters start at zero.

    ``nn.Linear`` draws its initial weights from torch's global random number
    generator; the objective is convex, so zeros (scikit-learn's start) lose
    nothing and leave the global generator alone. (``nn.utils.skip_init`` would
    too, but its meta-device round trip costs ~0.5 s of imports on first use.)
    """

    def reset_parameters(self):
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class LogisticRegressionModule(nn.Module):
    """``nn.Linear(n_features, n_outputs)`` and a sigmoid (``n_outputs == 1``) or softmax.

    ``forward`` returns probabilities, as the lesson's ``LR`` module does;
    :meth:`logits` returns the linear part, which training uses. Parameters
    start at zero. Dense and sparse COO inputs are both accepted.
    """

    def __init__(self, n_features, n_outputs, *, bias=True, dtype=None, device=None):
        super().__init__()
        self.linear = ZeroInitLinear(n_features, n_outputs, bias=bias, dtype=dtype, device=device)

    def extra_repr(self):
        return "output=" + ("sigmoid" if self.linear.out_features == 1 else "softmax")

    def logits(self, X):
        return linear_logits(X, self.linear.weight, self.linear.bias)

    def forward(self, X):
        z = self.logits(X)
        return torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, dim=1)
