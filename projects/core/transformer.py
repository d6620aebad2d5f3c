"""The ViT block shared by every MMAdapt method.

Parameter names follow timm (``norm1``, ``attn.qkv``, ``attn.proj``, ``ls1.gamma``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``) so timm / mmpretrain / mmseg / HF
checkpoints map onto it by renaming only.

Extension points, so later methods reuse this block rather than a second ViT:
- ``Block.attn`` is any module with ``forward(x, attn_bias) -> (out, keys_mean)``
  (SPViT can swap in a conv-or-attention layer at construction time);
- ``Block.forward`` takes the merge count ``r`` and a :class:`TokenState` per call, and
  the token reduction sits between attention and MLP (ToMe/PYRA; DyT's token dispatch
  can take the same slot);
- ``Block.forward_attn`` / ``forward_mlp`` are separately callable (stitching).
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from torch import Tensor, nn

from .lora import LoRAQKVLinear


class TokenState(NamedTuple):
    """Per-forward bookkeeping for token reduction; never stored on a module.

    size: (B, N, 1) how many original tokens each current token stands for, or None
        before the first merge.
    assignment: (B, N0) index of the current token each original token belongs to, or
        None when not traced (or before the first merge).
    trace: whether to maintain ``assignment``.
    """
    size: Optional[Tensor] = None
    assignment: Optional[Tensor] = None
    trace: bool = False


class LayerScale(nn.Module):

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention that also returns the keys averaged over heads
    (ToMe's matching metric) and accepts an additive bias on the logits
    (proportional attention: log of token sizes)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0,
                 lora_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dims {dim} is not divisible by num_heads {num_heads}.')
        self.num_heads = num_heads
        if lora_cfg:
            self.qkv = LoRAQKVLinear(dim, dim * 3, bias=qkv_bias, **lora_cfg)
        else:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, attn_bias: Optional[Tensor] = None,
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        bsz, n, c = x.shape
        qkv = self.qkv(x).reshape(bsz, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias,
            dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(bsz, n, c)))
        return out, (k.mean(1) if need_metric else None)


class Block(nn.Module):
    """Pre-norm transformer block with an optional token-merging step between
    attention and MLP (where ToMe and PYRA merge)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale: Optional[float] = None, norm_eps: float = 1e-6,
                 lora_cfg: Optional[dict] = None, merger: Optional[nn.Module] = None,
                 prop_attn: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop, lora_cfg)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, drop)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        # ``merger(x, metric, state, r) -> (x, state)``; None = a plain ViT block.
        self.merger = merger
        # proportional attention: add log(token size) to the logits once tokens merged
        self.prop_attn = prop_attn

    def forward_attn(self, x: Tensor, state: TokenState,
                     need_metric: bool) -> Tuple[Tensor, Optional[Tensor]]:
        bias = None
        if self.prop_attn and state.size is not None:
            bias = state.size.log()[:, None, None, :, 0].to(x.dtype)
        y, metric = self.attn(self.norm1(x), bias, need_metric)
        return x + self.drop_path(self.ls1(y)), metric

    def forward_mlp(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))

    def forward(self, x: Tensor, state: TokenState = TokenState(),
                r: int = 0) -> Tuple[Tensor, TokenState]:
        merging = self.merger is not None and r > 0
        x, metric = self.forward_attn(x, state, need_metric=merging)
        if merging:
            x, state = self.merger(x, metric, state, r)
        return self.forward_mlp(x), state
