"""The torch model: the lesson's ``nn.Linear`` followed by a sigmoid (softmax for K > 2)."""

import torch
from torch import nn

from ._objective import linear_logits


class LogisticRegressionModule(nn.Module):
    """``nn.Linear(n_features, n_outputs)`` and a sigmoid (``n_outputs == 1``) or softmax.

    ``forward`` returns probabilities, as the lesson's ``LR`` module does;
    :meth:`logits` returns the linear part, which training uses. Parameters
    start at zero without drawing from torch's global random number generator.
    Dense and sparse COO inputs are both accepted.
    """

    def __init__(self, n_features, n_outputs, *, bias=True, dtype=None, device=None):
        super().__init__()
        self.linear = nn.utils.skip_init(
            nn.Linear, n_features, n_outputs, bias=bias, dtype=dtype, device=device
        )
        with torch.no_grad():
            for p in self.linear.parameters():
                p.zero_()

    def logits(self, X):
        return linear_logits(X, self.linear.weight, self.linear.bias)

    def forward(self, X):
        z = self.logits(X)
        return torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, dim=1)
