"""The plain parts of a ViT block: multi-head self-attention, the MLP, LayerScale.

Parameter names follow timm (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``,
``ls1.gamma``) so timm / mmpretrain / mmseg / HF checkpoints map onto them by renaming
only.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.peft.lora import LoRAQKVLinear
from . import cost
from .context import TokenContext
from .interfaces import AttentionPart, MlpPart
from .registry import VIT_LAYERS


class LayerScale(nn.Module):

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


@VIT_LAYERS.register_module()
class Mlp(MlpPart):

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    def macs(self, num_tokens: float) -> float:
        return cost.mlp(num_tokens, self.fc1.in_features, self.fc1.out_features)


@VIT_LAYERS.register_module()
class Attention(AttentionPart):
    """Multi-head self-attention.

    It provides ToMe's matching metric (the keys averaged over heads), hides keys for
    an attention gate (``attend``), runs packed rows, and, with ``prop_attn``, adds
    log(token size) to the logits once tokens have been combined (``ctx.groups``;
    ToMe / PYRA's proportional attention).

    A variant that only adds biases (ESTA's stitch biases) overrides
    :meth:`extra_qkv_bias` / :meth:`extra_proj_bias`, so every execution path keeps
    working under it.
    """
    provides_metric = True
    masks_keys = True
    packs = True

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0,
                 lora_cfg: Optional[dict] = None, prop_attn: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dims {dim} is not divisible by num_heads {num_heads}.')
        self.num_heads = num_heads
        self.metric_dims = dim // num_heads  # ToMe's metric: keys averaged over heads
        if lora_cfg:
            self.qkv = LoRAQKVLinear(dim, dim * 3, bias=qkv_bias, **lora_cfg)
        else:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.prop_attn = prop_attn

    def macs(self, num_tokens: float, num_prefix: int = 1) -> float:
        """MSA on all tokens (LoRA counted folded, as deployed; bias hooks are free)."""
        return cost.msa(num_tokens, self.proj.in_features)

    # ------------------------------------------------------------ bias hooks
    def extra_qkv_bias(self, ctx: TokenContext) -> Optional[Tensor]:
        """A (3C,) bias added to the q/k/v projection in this forward (None: none)."""
        return None

    def extra_proj_bias(self, ctx: TokenContext) -> Optional[Tensor]:
        """A (C,) bias added to the output projection in this forward (None: none)."""
        return None

    def project_qkv(self, x: Tensor, ctx: TokenContext) -> Tensor:
        qkv = self.qkv(x)
        extra = self.extra_qkv_bias(ctx)
        return qkv if extra is None else qkv + extra

    def project_out(self, x: Tensor, ctx: TokenContext) -> Tensor:
        out = self.proj(x)
        extra = self.extra_proj_bias(ctx)
        return self.proj_drop(out if extra is None else out + extra)

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor, ctx: TokenContext = TokenContext(),
                attend: Optional[Tensor] = None,
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        bias = None
        if self.prop_attn and ctx.groups is not None:
            bias = ctx.groups.size.log()[:, None, None, :, 0].to(x.dtype)
        if attend is not None:  # an attention gate: inactive tokens are not attended
            hidden = torch.zeros(attend.shape, dtype=x.dtype, device=x.device)
            hidden = hidden.masked_fill(~attend, float('-inf'))[:, None, None, :]
            bias = hidden if bias is None else bias + hidden
        bsz, n, c = x.shape
        qkv = self.project_qkv(x, ctx).reshape(bsz, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0)
        out = self.project_out(out.transpose(1, 2).reshape(bsz, n, c), ctx)
        return out, (k.mean(1) if need_metric else None)

    def forward_packed(self, rows: Tensor, lengths: Sequence[int],
                       ctx: TokenContext = TokenContext()) -> Tensor:
        """Attention over ragged sequences packed into rows (K, C), ``lengths[b]`` rows
        per sample, without padding: the projections run on the K rows at once, the
        attention of each sample on its own rows (what an attention gate saves in
        eval; no merging, so no proportional attention)."""
        k_rows, c = rows.shape
        heads = self.num_heads
        qkv = self.project_qkv(rows, ctx).reshape(k_rows, 3, heads, c // heads) \
            .permute(1, 2, 0, 3)
        outs = []
        for q, k, v in zip(*(t.split(list(lengths), dim=1) for t in qkv.unbind(0))):
            if q.shape[1]:
                outs.append(F.scaled_dot_product_attention(q, k, v))
        out = torch.cat(outs, 1).transpose(0, 1).reshape(k_rows, c)
        return self.project_out(out, ctx)
