"""ESTA's parameter-efficient parts (PST, thesis §3.4.1).

* :class:`StitchBiasAttention` -- the one ViT's attention (with its stitch-agnostic
  LoRA on q/k/v) plus one bias row per stitch that runs this block, added to the q/k/v
  and output projections when that stitch runs.
* :class:`StitchingLayer` -- a linear map between two anchors' token spaces: a
  least-squares weight and bias (frozen under PST), a low-rank update of the weight,
  and one bias row per stitch that uses the layer.

Which stitch runs is per-forward state: it travels in the forward's
:class:`~projects.core.context.TokenContext` (``ctx.aux[STITCH_KEY]``, a 0-d long
tensor), never on the module.
"""
import math
from types import MappingProxyType
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.context import TokenContext
from ..core.param_roles import AddsParameters
from ..core.registry import VIT_LAYERS
from ..core.transformer import Attention

STITCH_KEY = 'esta.stitch'


def with_stitch(ctx: TokenContext, stitch: int) -> TokenContext:
    """``ctx`` telling the blocks that stitch ``stitch`` runs."""
    aux = {**ctx.aux, STITCH_KEY: torch.tensor(int(stitch))}
    return ctx._replace(aux=MappingProxyType(aux))


def stitch_of(ctx: TokenContext) -> Optional[int]:
    value = ctx.aux.get(STITCH_KEY)
    return None if value is None else int(value)


def _rows(users: Sequence[int]) -> Dict[int, int]:
    return {int(s): r for r, s in enumerate(users)}


@VIT_LAYERS.register_module()
class StitchBiasAttention(AddsParameters, Attention):
    """Attention with stitch-specific biases on ``qkv`` and ``proj``.

    stitch_users: ids of the stitches that run this block (one bias row each, zero at
    start); a forward without a stitch id in the context (an anchor used alone, outside
    a :class:`StitchedViT`) adds none.
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

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext(),
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        row = self.row(stitch_of(ctx))
        bias = None
        if self.prop_attn and ctx.size is not None:
            bias = ctx.size.log()[:, None, None, :, 0].to(x.dtype)
        bsz, n, c = x.shape
        qkv = self.qkv(x)
        if row is not None:
            qkv = qkv + self.stitch_bias_qkv[row]
        q, k, v = qkv.reshape(bsz, n, 3, self.num_heads, c // self.num_heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj(out.transpose(1, 2).reshape(bsz, n, c))
        if row is not None:
            out = out + self.stitch_bias_proj[row]
        return self.proj_drop(out), (k.mean(1) if need_metric else None)


class StitchingLayer(AddsParameters, nn.Module):
    """Token-wise ``Linear(in_dim, out_dim)`` between two anchors.

    rank: None trains the full weight (SN-Net, "PST w/ full SL"); 0 freezes it; r > 0
        freezes it and trains ``B A`` of rank r (A kaiming-uniform, B zero, scale 1).
    stitch_users: stitch ids served by this layer; with ``stitch_bias`` each has a
        bias row (zero at start).
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
            self.lora_B = nn.Parameter(torch.zeros(out_dim, rank))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.stitch_users = [int(s) for s in stitch_users]
        self._row = _rows(self.stitch_users)
        self.stitch_bias = nn.Parameter(torch.zeros(len(self.stitch_users), out_dim)) \
            if stitch_bias and self.stitch_users else None

    def trainable_parameter_names(self):
        names = [n for n, _ in self.named_parameters()
                 if n.startswith(('lora_', 'stitch_bias'))]
        return names + ['weight', 'bias'] if self.rank is None else names

    @torch.no_grad()
    def set_least_squares(self, weight: Tensor, bias: Tensor) -> None:
        self.weight.copy_(weight)
        self.bias.copy_(bias)

    def effective(self, stitch: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """(weight, bias) this layer applies for ``stitch`` (what folding writes)."""
        weight, bias = self.weight, self.bias
        if self.rank:
            weight = weight + self.lora_B @ self.lora_A
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
