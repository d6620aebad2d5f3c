"""The ViT block shared by every MMAdapt method, composed from config-built parts.

Parameter names follow timm (``norm1``, ``attn.qkv``, ``attn.proj``, ``ls1.gamma``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``) so timm / mmpretrain / mmseg / HF
checkpoints map onto it by renaming only.

One block, with a :class:`~projects.core.context.TokenContext` ``ctx`` threaded through::

    y, metric = attn(norm1(x), ctx, need_metric)         # attention slot
    x = x + drop_path(ls1(y))
    x, ctx = merger(x, metric, ctx)                      # token-reduction slot (optional)
    mask, ctx = mlp_gate(x, ctx)                         # per-token MLP gate (optional)
    x = x + mask * drop_path(ls2(mlp(norm2(x)))) + adapter(x, ctx)   # adapter optional

Each slot is built from :data:`~projects.core.registry.VIT_LAYERS` (or given as a
module) and has one interface. The block passes its dimensions as default constructor
arguments, so a part's ``__init__`` must accept them (or ``**kwargs``):

- attention (``attn_cfg``; gets ``dim, num_heads, qkv_bias, attn_drop, proj_drop``):
  ``forward(x, ctx, need_metric) -> (out, metric)``; ``metric`` (B, N, Cm) is what a
  merger matches on (None unless asked).
- MLP (``mlp_cfg``; gets ``dim, hidden, drop``): ``forward(x) -> x``, token-wise, so the
  block may run it on any subset of tokens.
- merger (``merger``; gets ``dim``): ``needs_metric(ctx) -> bool`` and
  ``forward(x, metric, ctx) -> (x, ctx)``; runs at every layer and decides itself
  (ToMe reads ``ctx.num_merge``). A step that changes the tokens sets
  ``ctx.on_grid=False``.
- MLP gate (``mlp_gate``; gets ``dim``): ``forward(x, ctx) -> (mask, ctx)``, mask (B, N)
  float in [0, 1] (training, straight-through) or bool (hard); None = every token.
  With a bool mask in eval mode only the active tokens run the MLP, packed across the
  batch without padding.
- adapter (``adapter``; gets ``dim``): ``forward(x, ctx) -> Tensor`` added to the block
  output in parallel with the MLP, on every token.

Example -- a new attention variant, and a per-token MLP gate, by configuration only::

    @VIT_LAYERS.register_module()
    class TalkingHeadsAttention(Attention): ...      # same forward(x, ctx, need_metric)

    @VIT_LAYERS.register_module()
    class ThresholdGate(AddsParameters, nn.Module):
        def __init__(self, dim, **kwargs):
            super().__init__()
            self.score = nn.Linear(dim, 1)
        def forward(self, x, ctx):
            mask = self.score(x)[..., 0] > 0
            return mask, ctx.with_aux('mlp_rate', mask.float().mean())

    backbone = dict(type='PYRAViT', arch='b', block_cfg=dict(
        attn_cfg=dict(type='TalkingHeadsAttention'), mlp_gate=dict(type='ThresholdGate')))

``AddsParameters`` (``param_roles.py``) marks the gate's parameters as new (allowed
missing from pretrained checkpoints) and trainable when the backbone is frozen.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from torch import Tensor, nn

from .context import TokenContext
from .lora import LoRAQKVLinear
from .registry import VIT_LAYERS, LayerCfg, build_layer


class LayerScale(nn.Module):

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


@VIT_LAYERS.register_module()
class Mlp(nn.Module):

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


@VIT_LAYERS.register_module()
class Attention(nn.Module):
    """Multi-head self-attention that can also return the keys averaged over heads
    (ToMe's matching metric) and, with ``prop_attn``, adds log(token size) to the
    logits once tokens have merged (ToMe/PYRA's proportional attention)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0,
                 lora_cfg: Optional[dict] = None, prop_attn: bool = True) -> None:
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
        self.prop_attn = prop_attn

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext(),
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        bias = None
        if self.prop_attn and ctx.size is not None:
            bias = ctx.size.log()[:, None, None, :, 0].to(x.dtype)
        bsz, n, c = x.shape
        qkv = self.qkv(x).reshape(bsz, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(bsz, n, c)))
        return out, (k.mean(1) if need_metric else None)


class Block(nn.Module):
    """Pre-norm transformer block with optional token-reduction, MLP-gate and adapter
    slots (see the module docstring for the interfaces)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale: Optional[float] = None, norm_eps: float = 1e-6,
                 attn_cfg: LayerCfg = None, mlp_cfg: LayerCfg = None,
                 merger: LayerCfg = None, mlp_gate: LayerCfg = None,
                 adapter: LayerCfg = None) -> None:
        super().__init__()
        # built first: the pre-composition code created the merger before the block,
        # so seeded initialisations stay the same
        self.merger = build_layer(merger, dim=dim)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = build_layer(attn_cfg or dict(type='Attention'), dim=dim,
                                num_heads=num_heads, qkv_bias=qkv_bias,
                                attn_drop=attn_drop, proj_drop=drop)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = build_layer(mlp_cfg or dict(type='Mlp'), dim=dim, hidden=mlp_hidden,
                               drop=drop)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp_gate = build_layer(mlp_gate, dim=dim)
        self.adapter = build_layer(adapter, dim=dim)

    def forward_attn(self, x: Tensor, ctx: TokenContext,
                     need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        y, metric = self.attn(self.norm1(x), ctx, need_metric)
        return x + self.drop_path(self.ls1(y)), metric

    def mlp_branch(self, x: Tensor) -> Tensor:
        return self.drop_path(self.ls2(self.mlp(self.norm2(x))))

    def forward_mlp(self, x: Tensor, ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        mask = None
        if self.mlp_gate is not None:
            mask, ctx = self.mlp_gate(x, ctx)
        if mask is None:
            out = x + self.mlp_branch(x)
        elif mask.dtype == torch.bool and not self.training:
            out = self._packed_mlp(x, mask)
        else:
            out = x + self.mlp_branch(x) * mask[..., None].to(x.dtype)
        if self.adapter is not None:
            out = out + self.adapter(x, ctx)
        return out, ctx

    def _packed_mlp(self, x: Tensor, mask: Tensor) -> Tensor:
        """Run the MLP on the active tokens only, packed across the batch (no padding)
        and added back in place: what a hard mask saves at inference."""
        flat = x.reshape(-1, x.shape[-1])
        rows = mask.reshape(-1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return x
        return flat.index_add(0, rows, self.mlp_branch(flat.index_select(0, rows))).view_as(x)

    def forward(self, x: Tensor,
                ctx: TokenContext = TokenContext()) -> Tuple[Tensor, TokenContext]:
        need_metric = self.merger is not None and self.merger.needs_metric(ctx)
        x, metric = self.forward_attn(x, ctx, need_metric)
        if self.merger is not None:
            x, ctx = self.merger(x, metric, ctx)
        return self.forward_mlp(x, ctx)
