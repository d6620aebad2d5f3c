"""SPViT's gates: sampling in training, hard decisions in evaluation, and the
deterministic straight-through surrogate the FLOPs function uses.

Sampling is the relaxed Bernoulli of the official code (logistic noise added to the
logit theta, temperature tau, hard forward / soft backward), which is exactly DyT's
straight-through Gumbel-sigmoid (``projects/vit/gumbel.py``, shared by both).
Evaluation keeps a gate when sigma(theta) > 0.5, i.e. theta > 0.
"""
import torch
from torch import Tensor

from ..vit.gumbel import gumbel_sigmoid


def sample_gates(theta: Tensor, tau: float, training: bool) -> Tensor:
    """One 0/1 float per logit: sampled (straight-through) in training, theta > 0 else."""
    gates = gumbel_sigmoid(theta, tau, training)
    return gates if training else gates.to(theta.dtype)


def ordered_attention_gates(theta: Tensor, tau: float, training: bool,
                            damp: bool = True) -> Tensor:
    """The three ordered MSA gates (>= 1x1, >= 3x3, MSA) after the cumulative product.

    ``damp`` (official code): once the 1x1 and 3x3 gates are both on, the 1x1 gate gets
    no gradient, and once the MSA gate is on too, neither does the 3x3 one -- the
    cheaper choices are not pushed while a dearer one is active.
    """
    g = sample_gates(theta, tau, training)
    g1, g2, g3 = g.unbind(0)
    if damp and training:
        if bool(g1 > 0.5) and bool(g2 > 0.5):
            g1 = g1.detach()
            if bool(g3 > 0.5):
                g2 = g2.detach()
    return torch.cumprod(torch.stack([g1, g2, g3]), 0)


def surrogate_gates(theta: Tensor) -> Tensor:
    """The FLOPs function's gate values: 1[sigma(theta) > 0.5] forward, the gradient of
    sigmoid(sigma(theta) - 0.5) backward (official ``calculate_bops_loss``)."""
    soft = torch.sigmoid(torch.sigmoid(theta) - 0.5)
    hard = (theta > 0).to(theta.dtype)
    return hard - soft.detach() + soft


def op_of(theta: Tensor) -> int:
    """Hard op index of three MSA-gate logits: 0 skip, 1 conv1x1, 2 conv3x3, 3 MSA."""
    return int(torch.cumprod((theta > 0).long(), 0).sum())
