"""Multiply-adds for the analysis tools, counted in one place.

* :func:`executed_macs` -- what a ViT backbone really ran on a batch (merged token
  counts, dispatcher masks), per image. Every tool that prints a backbone's GFLOPs calls
  it; the count it delegates to is chosen in :func:`_count` below and nowhere else, so
  switching the tools to another cost model is a one-line change.
* :func:`counter_macs` -- torch's ``FlopCounterMode`` on any callable, per image: the
  independent count (2 FLOPs per multiply-add). On this torch build it records no
  multiply-adds for CPU ``scaled_dot_product_attention`` and cannot see mmcv's
  deformable attention; tools that print it say so.

GFLOPs in the tools follow the ViT papers' convention: 1 "FLOP" = 1 multiply-add.
"""
from typing import Callable

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode


def _count(backbone, images: Tensor) -> float:
    # the one cost model: each part at its own width and op, on the tokens it ran
    from projects.vit.cost import executed_macs as count
    return count(backbone, images)


def counts_executed(backbone) -> bool:
    """Whether :func:`executed_macs` can count ``backbone`` (an MMAdapt ViT with a
    context-returning forward: ComposableViT and its subclasses, ESTA's StitchedViT)."""
    return hasattr(backbone, 'forward_with_context')


@torch.no_grad()
def executed_macs(backbone, images: Tensor) -> float:
    """Multiply-adds per image of what ``backbone`` ran on ``images`` (eval mode)."""
    if not counts_executed(backbone):
        raise TypeError(f'{type(backbone).__name__} has no forward_with_context: the '
                        'executed count reads a ComposableViT forward; use counter_macs '
                        'for other models.')
    return float(_count(backbone, images))


def counter_macs(fn: Callable[[Tensor], object], images: Tensor) -> float:
    """Multiply-adds per image of ``fn(images)`` counted by ``FlopCounterMode``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(images)
    return counter.get_total_flops() / 2 / images.shape[0]


def counter_flops(fn: Callable[[], object]) -> float:
    """FLOPs (2 per multiply-add) of one call of ``fn`` counted by ``FlopCounterMode``,
    gradients included when ``fn`` runs a backward."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())
