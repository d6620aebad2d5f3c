"""Structured tuning on (a row block of) any linear layer: LoRA (SPT-LoRA) and a
sequential Adapter (SPT-Adapter), with their parameter costs used by the allocation.

LoRA follows the official SPT code: A kaiming-uniform, B zero, scale 1 by default
(``scale`` = alpha / rank in other LoRA codes), dropout on its input. It is the one
low-rank update of :mod:`projects.core.peft.low_rank` (state-dict names ``A`` / ``B``);
linear, so :meth:`LoRA.delta_weight` folds it into the base weight. The Adapter acts
on the layer *output*, ``y + up(GELU(down(dropout(y))))`` (up zero-initialised), is
non-linear and therefore cannot be folded.
"""
import torch
from torch import Tensor, nn

from ..core.peft.low_rank import init_low_rank_, low_rank_delta, low_rank_forward

STRUCTURED_TYPES = ('lora', 'adapter')


def structured_cost(kind: str, rank: int, d_in: int, d_out: int) -> int:
    """Trainable parameters of one structured module on a (d_out, d_in) matrix."""
    if kind == 'lora':
        return rank * (d_in + d_out)
    if kind == 'adapter':
        return 2 * rank * d_out + rank + d_out
    raise ValueError(f'structured type must be one of {STRUCTURED_TYPES}, got {kind!r}.')


class LoRA(nn.Module):
    """Low-rank update ``scale * B A`` of a (d_out, d_in) weight."""

    def __init__(self, d_in: int, d_out: int, rank: int = 8, scale: float = 1.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f'LoRA rank must be positive, got {rank}.')
        self.rank = rank
        self.scale = scale
        self.A = nn.Parameter(torch.empty(rank, d_in))
        self.B = nn.Parameter(torch.empty(d_out, rank))
        init_low_rank_(self.A, self.B)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return low_rank_forward(self.dropout(x), self.A, self.B, self.scale)

    def delta_weight(self) -> Tensor:
        return low_rank_delta(self.A, self.B, self.scale)


class Adapter(nn.Module):
    """Bottleneck adapter applied to a layer's output (added residually)."""

    def __init__(self, dim: int, rank: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f'Adapter rank must be positive, got {rank}.')
        self.down = nn.Linear(dim, rank)
        self.act = nn.GELU()
        self.up = nn.Linear(rank, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, y: Tensor) -> Tensor:
        """The residual to add to ``y``."""
        return self.up(self.act(self.down(self.dropout(y))))
