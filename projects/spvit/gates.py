"""SPViT's gates: sampling in training, hard decisions in evaluation, and the
deterministic straight-through surrogate the FLOPs function uses.

Sampling is the relaxed Bernoulli of the official code (logistic noise added to the
logit theta, temperature tau, hard forward / soft backward), which is exactly DyT's
straight-through Gumbel-sigmoid (``projects/vit/gumbel.py``, shared by both).
Evaluation keeps a gate when sigma(theta) > 0.5, i.e. theta > 0.
"""
from typing import Union

import torch
from torch import Tensor

from ..vit.gumbel import gumbel_sigmoid


def sample_gates(theta: Tensor, tau: float, training: bool) -> Tensor:
    """One 0/1 float per logit: sampled (straight-through) in training, theta > 0 else."""
    gates = gumbel_sigmoid(theta, tau, training)
    return gates if training else gates.to(theta.dtype)


#: where the cheaper gates' gradient is cut: after the cumulative product (official
#: ``single_path_init``), before it (an ablation: the task stops steering theta_1 and
#: theta_2 while MSA is sampled, and the FLOPs term alone moves them), or nowhere
DAMP_MODES = ('product', 'sample', 'none')


def _damp_mode(damp: Union[bool, str]) -> str:
    mode = {True: 'product', False: 'none'}.get(damp, damp) if isinstance(damp, bool) \
        else damp
    if mode not in DAMP_MODES:
        raise ValueError(f'SPViT gate damping {damp!r}: use one of {DAMP_MODES} (True = '
                         "'product', the official order; False = 'none').")
    return mode


def ordered_attention_gates(theta: Tensor, tau: float, training: bool,
                            damp: Union[bool, str] = 'product') -> Tensor:
    """The three ordered MSA gates (>= 1x1, >= 3x3, MSA) after the cumulative product.

    Damping slows the cheaper choices while a dearer one is sampled: once the 3x3 slot
    is on, the 1x1 slot is detached, and once MSA is on, the 3x3 slot too. ``'product'``
    (official) detaches the product slots, so the MSA slot g1 g2 g3 still carries the
    task's gradient to all three logits; ``'sample'`` detaches the raw samples before
    the product, which leaves theta_1 and theta_2 to the FLOPs term whenever MSA runs.
    """
    mode = _damp_mode(damp)
    g1, g2, g3 = sample_gates(theta, tau, training).unbind(0)
    on = training and mode != 'none'
    if on and mode == 'sample' and bool(g1 > 0.5) and bool(g2 > 0.5):
        g1 = g1.detach()
        if bool(g3 > 0.5):
            g2 = g2.detach()
    c1 = g1
    c2 = c1 * g2
    c3 = c2 * g3
    if on and mode == 'product' and bool(c2 > 0.5):
        c1 = c1.detach()
        if bool(c3 > 0.5):
            c2 = c2.detach()
    return torch.stack([c1, c2, c3])


def surrogate_gates(theta: Tensor) -> Tensor:
    """The FLOPs function's gate values: 1[sigma(theta) > 0.5] forward, the gradient of
    sigmoid(sigma(theta) - 0.5) backward (official ``calculate_bops_loss``)."""
    soft = torch.sigmoid(torch.sigmoid(theta) - 0.5)
    hard = (theta > 0).to(theta.dtype)
    return hard - soft.detach() + soft


def op_of(theta: Tensor) -> int:
    """Hard op index of three MSA-gate logits: 0 skip, 1 conv1x1, 2 conv3x3, 3 MSA."""
    return int(torch.cumprod((theta > 0).long(), 0).sum())
