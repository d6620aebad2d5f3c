"""The one low-rank update of MMAdapt: ``delta_W = scale * B @ A`` of a (d_out, d_in)
weight, with A (rank, d_in) and B (d_out, rank).

Every low-rank method uses these functions: LoRA on the fused q/k/v
(:class:`~projects.core.peft.lora.LoRAQKVLinear`), SPT-LoRA
(``projects/spt/structured.py``) and the LoRA of ESTA's stitching layers. The forward
form never builds the dense (d_out, d_in) matrix; both forms are the same linear map,
so a layer's :meth:`~projects.core.peft.foldable.Foldable.delta_weights` (merging,
unmerging, the folded export) and its unmerged forward agree.
"""
import math

import torch.nn.functional as F
from torch import Tensor, nn


def low_rank_delta(a: Tensor, b: Tensor, scale: float = 1.0) -> Tensor:
    """The dense update ``scale * B @ A`` (d_out, d_in)."""
    return (b @ a) * scale


def low_rank_forward(x: Tensor, a: Tensor, b: Tensor, scale: float = 1.0) -> Tensor:
    """``x @ low_rank_delta(a, b, scale).T`` through the rank bottleneck:
    ``(x A^T) B^T * scale``."""
    return F.linear(F.linear(x, a), b) * scale


def init_low_rank_(a: Tensor, b: Tensor) -> None:
    """LoRA's initialisation: A kaiming-uniform (as ``nn.Linear``), B zero, so the
    update is zero and the adapted layer equals the pretrained one at start."""
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    nn.init.zeros_(b)
