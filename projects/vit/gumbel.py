"""The straight-through Gumbel-sigmoid, shared by every learned 0/1 decision (DyT's
token dispatchers, SPViT's gates).

Training: the forward uses the hard mask 1[sigma((g + G1 - G2) / tau) > 0.5], which is
Bernoulli(sigma(g)) whatever tau is, and the backward the gradient of the soft value
(tau only scales it). Evaluation: the deterministic ``g > 0`` as a bool tensor.

``noise`` scales the logistic noise G1 - G2: 1 is the Gumbel-sigmoid above, 0 makes the
training forward the eval mask 1[g > 0] with the same straight-through gradient (a
schedule can anneal it so that training ends on the masks eval will use).
"""
import torch
from torch import Tensor


def gumbel_sigmoid(logits: Tensor, tau: float, training: bool,
                   noise: float = 1.0) -> Tensor:
    """Straight-through Gumbel-sigmoid mask (float) in training, ``logits > 0`` (bool)
    otherwise; ``noise`` in [0, 1] scales the Gumbel noise (module docstring)."""
    if not training:
        return logits > 0
    if not 0 <= noise <= 1:
        raise ValueError(f'gumbel_sigmoid: noise must be in [0, 1], got {noise}.')
    if noise > 0:
        g1 = -torch.empty_like(logits).exponential_().log()
        g2 = -torch.empty_like(logits).exponential_().log()
        logits = logits + noise * (g1 - g2)
    soft = torch.sigmoid(logits / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return hard - soft.detach() + soft
