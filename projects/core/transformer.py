"""The ViT block shared by every MMAdapt method, composed from config-built parts.

Parameter names follow timm (``norm1``, ``attn.qkv``, ``attn.proj``, ``ls1.gamma``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``) so timm / mmpretrain / mmseg / HF
checkpoints map onto it by renaming only.

One block, with a :class:`~projects.core.context.TokenContext` ``ctx`` threaded through::

    gate, ctx = attn_gate(x, ctx)                        # attention gate (optional)
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
- attention gate (``attn_gate``; gets ``dim``): ``forward(x, ctx) -> (mask, ctx)`` on the
  block input, like the MLP gate. A (B, N) mask lets only the active tokens attend and
  be attended to (inactive ones keep their value); a (B,) mask skips attention and MLP
  of whole samples. With ``gates_mlp = True`` on the part, the (B, N) mask also gates
  the MLP (one decision per token for the whole block). Bool masks in eval run the
  active tokens / samples alone (``Attention.forward_packed``: projections on the
  packed rows, attention per sample, no padding). Not combinable with a merger in the
  same block.

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
from typing import Callable, Optional, Sequence, Tuple

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
        if ctx.keys is not None:  # an attention gate: inactive tokens are not attended
            hidden = torch.zeros(ctx.keys.shape, dtype=x.dtype, device=x.device)
            hidden = hidden.masked_fill(~ctx.keys, float('-inf'))[:, None, None, :]
            bias = hidden if bias is None else bias + hidden
        bsz, n, c = x.shape
        qkv = self.qkv(x).reshape(bsz, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(bsz, n, c)))
        return out, (k.mean(1) if need_metric else None)

    def forward_packed(self, rows: Tensor, lengths: Sequence[int]) -> Tensor:
        """Attention over ragged sequences packed into rows (K, C), ``lengths[b]`` rows
        per sample, without padding: the projections run on the K rows at once, the
        attention of each sample on its own rows (what an attention gate saves in
        eval; no merging, so no proportional attention)."""
        k_rows, c = rows.shape
        heads = self.num_heads
        qkv = self.qkv(rows).reshape(k_rows, 3, heads, c // heads).permute(1, 2, 0, 3)
        outs = []
        for q, k, v in zip(*(t.split(list(lengths), dim=1) for t in qkv.unbind(0))):
            if q.shape[1]:
                outs.append(F.scaled_dot_product_attention(q, k, v))
        out = torch.cat(outs, 1).transpose(0, 1).reshape(k_rows, c)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block with optional token-reduction, token-gate and adapter
    slots (see the module docstring for the interfaces)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale: Optional[float] = None, norm_eps: float = 1e-6,
                 attn_cfg: LayerCfg = None, mlp_cfg: LayerCfg = None,
                 merger: LayerCfg = None, mlp_gate: LayerCfg = None,
                 adapter: LayerCfg = None, attn_gate: LayerCfg = None) -> None:
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
        # added last, so blocks without it keep their seeded initialisation
        if attn_gate is not None:
            self.attn_gate = build_layer(attn_gate, dim=dim)
            self._check_attn_gate()
        else:
            self.attn_gate = None
        for slot in ('mlp_gate', 'attn_gate'):  # a gate may say which slot it belongs in
            part = getattr(self, slot)
            wanted = getattr(part, 'slot', slot)
            if wanted != slot:
                name = type(part).__name__
                raise ValueError(f'Block: {name} belongs in the {wanted!r} slot, not '
                                 f'{slot!r}; configure it under block_cfg=dict({wanted}'
                                 '=...).')

    def _check_attn_gate(self) -> None:
        gate = type(self.attn_gate).__name__
        if self.merger is not None:
            raise ValueError(f'Block: the attention gate {gate} cannot be combined with '
                             'a token merger in the same block (merging matches on the '
                             'keys of every token). Gate the MLP (mlp_gate) instead, or '
                             'merge in other layers (block_overrides).')
        if getattr(self.attn_gate, 'gates_mlp', False) and self.mlp_gate is not None:
            raise ValueError(f'Block: {gate} gates the MLP too (gates_mlp=True); remove '
                             'the mlp_gate of this block.')
        if not hasattr(self.attn, 'forward_packed'):
            raise ValueError(f'Block: the attention gate {gate} needs an attention with '
                             f'forward_packed(rows, lengths) to save compute in eval; '
                             f'{type(self.attn).__name__} has none.')

    def forward_attn(self, x: Tensor, ctx: TokenContext,
                     need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        y, metric = self.attn(self.norm1(x), ctx, need_metric)
        return x + self.drop_path(self.ls1(y)), metric

    def mlp_branch(self, x: Tensor) -> Tensor:
        return self.drop_path(self.ls2(self.mlp(self.norm2(x))))

    def forward_mlp(self, x: Tensor, ctx: TokenContext,
                    mask: Optional[Tensor] = None) -> Tuple[Tensor, TokenContext]:
        """MLP and adapter; ``mask`` is the MLP gate's unless an attention gate that
        gates the MLP too passes its own."""
        if mask is None and self.mlp_gate is not None:
            mask, ctx = self.mlp_gate(x, ctx)
        if mask is None:
            out = x + self.mlp_branch(x)
        elif mask.dtype == torch.bool and not self.training:
            out = self._add_on_active(x, mask, lambda rows, _: self.mlp_branch(rows))
        else:
            out = x + self.mlp_branch(x) * mask[..., None].to(x.dtype)
        if self.adapter is not None:
            out = out + self.adapter(x, ctx)
        return out, ctx

    @staticmethod
    def _add_on_active(x: Tensor, mask: Tensor,
                       fn: Callable[[Tensor, Sequence[int]], Tensor]) -> Tensor:
        """``x`` plus ``fn`` of its active tokens only, packed across the batch (no
        padding) and added back in place: what a hard mask saves at inference. ``fn``
        gets the packed rows and the number of active tokens per sample."""
        flat = x.reshape(-1, x.shape[-1])
        rows = mask.reshape(-1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return x
        update = fn(flat.index_select(0, rows), mask.sum(1).tolist())
        return flat.index_add(0, rows, update).view_as(x)

    def gated_attn(self, x: Tensor, mask: Tensor, ctx: TokenContext) -> Tensor:
        """Attention for the active tokens only: inactive tokens neither attend nor are
        attended to, and keep their value. A bool mask in eval runs the active tokens
        alone (:meth:`Attention.forward_packed`); otherwise the dense attention hides the
        inactive keys and the straight-through mask scales the update (its gradient
        reaches the gate through that product)."""
        if mask.dtype == torch.bool and not self.training:
            return self._add_on_active(x, mask, lambda rows, lengths: self.ls1(
                self.attn.forward_packed(self.norm1(rows), lengths)))
        keys = mask if mask.dtype == torch.bool else mask.detach() > 0.5
        y, _ = self.attn(self.norm1(x), ctx._replace(keys=keys), False)
        return x + self.drop_path(self.ls1(y)) * mask[..., None].to(x.dtype)

    def _sample_gated(self, x: Tensor, keep: Tensor,
                      ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        """A per-sample gate (B,) skips attention and MLP of whole samples; the adapter
        still runs on every sample. A bool gate in eval runs the kept samples alone."""
        if keep.dtype == torch.bool and not self.training:
            idx = keep.nonzero().squeeze(1)
            x1 = y = x
            if idx.numel():
                sub = ctx._replace(size=None if ctx.size is None else ctx.size[idx])
                inner, _ = self.forward_attn(x[idx], sub)
                x1 = x.index_copy(0, idx, inner)
                y = x.index_copy(0, idx, inner + self.mlp_branch(inner))
        else:
            scale = keep.to(x.dtype)[:, None, None]
            inner, _ = self.forward_attn(x, ctx)
            x1 = x + (inner - x) * scale
            y = x1 + self.mlp_branch(x1) * scale
        if self.adapter is not None:
            y = y + self.adapter(x1, ctx)
        return y, ctx

    def forward(self, x: Tensor,
                ctx: TokenContext = TokenContext()) -> Tuple[Tensor, TokenContext]:
        gate = None
        if self.attn_gate is not None:
            gate, ctx = self.attn_gate(x, ctx)
        if gate is not None and gate.dim() == 1:
            return self._sample_gated(x, gate, ctx)
        if gate is not None:
            x = self.gated_attn(x, gate, ctx)
            return self.forward_mlp(
                x, ctx, gate if getattr(self.attn_gate, 'gates_mlp', False) else None)
        need_metric = self.merger is not None and self.merger.needs_metric(ctx)
        x, metric = self.forward_attn(x, ctx, need_metric)
        if self.merger is not None:
            x, ctx = self.merger(x, metric, ctx)
        return self.forward_mlp(x, ctx)
