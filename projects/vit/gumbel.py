"""The straight-through Gumbel-sigmoid, shared by every learned 0/1 decision (DyT's
token dispatchers, SPViT's gates).

Training: the forward uses the hard mask 1[sigma((g + G1 - G2) / tau) > 0.5], which is
Bernoulli(sigma(g)) whatever tau is, and the backward the gradient of the soft value
(tau only scales it). Evaluation: the deterministic ``g > 0`` as a bool tensor.
"""
import torch
from torch import Tensor


def gumbel_sigmoid(logits: Tensor, tau: float, training: bool) -> Tensor:
    """Straight-through Gumbel-sigmoid mask (float) in training, ``logits > 0`` (bool)
    otherwise."""
    if not training:
        return logits > 0
    g1 = -torch.empty_like(logits).exponential_().log()
    g2 = -torch.empty_like(logits).exponential_().log()
    soft = torch.sigmoid((logits + g1 - g2) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return hard - soft.detach() + soft
