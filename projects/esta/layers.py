"""ESTA's parameter-efficient parts (PST, thesis §3.4.1).

* :class:`StitchBiasAttention` -- the one ViT's attention (with its stitch-agnostic
  LoRA on q/k/v) plus one bias row per stitch that runs this block, added to the q/k/v
  and output projections when that stitch runs. It overrides only the attention's bias
  hooks, so key masking, packed execution and proportional attention work under it.
* :class:`StitchingLayer` -- a linear map between two anchors' token spaces: a
  least-squares weight and bias (frozen under PST), a low-rank update of the weight
  (the one low-rank update of ``projects/core/peft``; the layer is ``Foldable``, so
  the LoRA merges, unmerges and exports like every other), and one bias row per
  stitch that uses the layer (chosen per stitch at export: ``effective``).

Which stitch runs is an input of the forward: a :class:`Stitch` entry that
:class:`~projects.esta.backbone.StitchedViT` gives to the anchors' ``embed`` and the
parts read from the context (``ctx.get(Stitch)``), never from the module.
"""
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.peft.foldable import Foldable
from ..core.peft.low_rank import init_low_rank_, low_rank_delta
from ..vit.context import TokenContext
from ..vit.param_roles import AddsParameters
from ..vit.parts import Attention
from ..vit.registry import VIT_LAYERS


class Stitch(NamedTuple):
    """The stitch a forward runs (a per-forward input of the anchors)."""
    id: int


def stitch_of(ctx: TokenContext) -> Optional[int]:
    entry = ctx.get(Stitch)
    return None if entry is None else entry.id


def _rows(users: Sequence[int]) -> Dict[int, int]:
    return {int(s): r for r, s in enumerate(users)}


@VIT_LAYERS.register_module()
class StitchBiasAttention(AddsParameters, Attention):
    """Attention with stitch-specific biases on ``qkv`` and ``proj``.

    stitch_users: ids of the stitches that run this block (one bias row each, zero at
    start); a forward without a stitch (an anchor used alone, outside a
    :class:`StitchedViT`) adds none.
    """

    def __init__(self, dim: int, num_heads: int, stitch_users: Sequence[int] = (),
                 **kwargs) -> None:
        super().__init__(dim, num_heads, **kwargs)
        self.stitch_users = [int(s) for s in stitch_users]
        self._row = _rows(self.stitch_users)
        n = len(self.stitch_users)
        self.stitch_bias_qkv = nn.Parameter(torch.zeros(n, 3 * dim))
        self.stitch_bias_proj = nn.Parameter(torch.zeros(n, dim))

    def new_parameter_names(self):
        return ['stitch_bias_qkv', 'stitch_bias_proj']

    def row(self, stitch: Optional[int]) -> Optional[int]:
        return None if stitch is None else self._row.get(stitch)

    def extra_qkv_bias(self, ctx: TokenContext) -> Optional[Tensor]:
        row = self.row(stitch_of(ctx))
        return None if row is None else self.stitch_bias_qkv[row]

    def extra_proj_bias(self, ctx: TokenContext) -> Optional[Tensor]:
        row = self.row(stitch_of(ctx))
        return None if row is None else self.stitch_bias_proj[row]


class StitchingLayer(Foldable, nn.Module):
    """Token-wise ``Linear(in_dim, out_dim)`` between two anchors.

    rank: None trains the full weight (SN-Net, "PST w/ full SL"); 0 freezes it; r > 0
        freezes it and trains ``B A`` of rank r (A kaiming-uniform, B zero, scale 1).
    stitch_users: stitch ids served by this layer; with ``stitch_bias`` each has a
        bias row (zero at start).

    Every parameter is new (no pretrained ViT has stitching layers); which train is
    declared by :meth:`trainable_parameter_names`. Folding absorbs ``lora_A`` /
    ``lora_B`` into ``weight``; the stitch bias rows stay (one is picked per stitch).
    """

    def __init__(self, in_dim: int, out_dim: int, rank: Optional[int] = None,
                 stitch_users: Sequence[int] = (), stitch_bias: bool = True) -> None:
        super().__init__()
        if rank is not None and rank < 0:
            raise ValueError(f'stitching-layer LoRA rank must be >= 0 or None, got {rank}.')
        self.in_dim, self.out_dim, self.rank = in_dim, out_dim, rank
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if rank:
            self.lora_A = nn.Parameter(torch.empty(rank, in_dim))
            self.lora_B = nn.Parameter(torch.empty(out_dim, rank))
            init_low_rank_(self.lora_A, self.lora_B)
        self.stitch_users = [int(s) for s in stitch_users]
        self._row = _rows(self.stitch_users)
        self.stitch_bias = nn.Parameter(torch.zeros(len(self.stitch_users), out_dim)) \
            if stitch_bias and self.stitch_users else None
        self.merged = False

    def new_parameter_names(self) -> List[str]:
        return [n for n, _ in self.named_parameters()]

    def _lora_names(self) -> List[str]:
        return ['lora_A', 'lora_B'] if self.rank else []

    def trainable_parameter_names(self) -> List[str]:
        names = self._lora_names() + (['stitch_bias'] if self.stitch_bias is not None else [])
        return names + ['weight', 'bias'] if self.rank is None else names

    def folded_away_names(self) -> List[str]:
        return self._lora_names()

    def delta_weights(self) -> Dict[str, Tensor]:
        if not self.rank:
            return {}
        return {'weight': low_rank_delta(self.lora_A, self.lora_B)}

    @torch.no_grad()
    def set_least_squares(self, weight: Tensor, bias: Tensor) -> None:
        self.weight.copy_(weight)
        self.bias.copy_(bias)

    def effective(self, stitch: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """(weight, bias) this layer applies for ``stitch`` (what folding writes)."""
        weight, bias = self.weight, self.bias
        delta = self.delta_weights().get('weight')
        if delta is not None and not self.merged:
            weight = weight + delta
        row = None if stitch is None else self._row.get(stitch)
        if self.stitch_bias is not None and row is not None:
            bias = bias + self.stitch_bias[row]
        return weight, bias

    def forward(self, x: Tensor, stitch: Optional[int] = None) -> Tensor:
        weight, bias = self.effective(stitch)
        return F.linear(x, weight, bias)


#: singular values below this fraction of the largest are dropped (a truncated
#: pseudo-inverse): LayerNorm-ed tokens sum to ~0 over channels, a near-null direction
#: whose tiny singular value would otherwise give huge, noise-fitting weights
LS_RCOND = 1e-6


def least_squares(x: Tensor, y: Tensor, rcond: float = LS_RCOND) -> Tuple[Tensor, Tensor]:
    """(W, b) minimising ||x W^T + b - y||: SN-Net's pseudo-inverse init, solved in
    float64 on ``x`` (rows, d_in) augmented with a ones column."""
    xa = torch.cat([x.double(), x.new_ones(x.shape[0], 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(xa, y.double(), rcond=rcond, driver='gelsd').solution
    return sol[:-1].T.float(), sol[-1].float()
