"""The ViT block shared by every MMAdapt method, composed from config-built parts.

One block, with a :class:`~projects.vit.context.TokenContext` ``ctx`` threaded through::

    gate, ctx = attn_gate(x, ctx)                        # attention gate (optional)
    y, metric = attn(norm1(x), ctx, ...)                 # attention slot
    x = x + drop_path(ls1(y))
    x, ctx = merger(x, metric, ctx)                      # token-reduction slot (optional)
    gate, ctx = mlp_gate(x, ctx)                         # per-token MLP gate (optional)
    x = x + keep * drop_path(ls2(mlp(norm2(x)))) + adapter(x, ctx)   # adapter optional

Each slot is built from :data:`~projects.vit.registry.VIT_LAYERS` (or given as a
module) and must subclass its slot's interface (:mod:`projects.vit.interfaces`). The
block passes its dimensions as default constructor arguments, so a part's ``__init__``
must accept them (or ``**kwargs``):

- attention (``attn_cfg``; ``dim, num_heads, qkv_bias, attn_drop, proj_drop``);
- MLP (``mlp_cfg``; ``dim, hidden, drop``);
- merger, MLP gate, adapter, attention gate (``dim``).

A gate's decision (:class:`~projects.vit.interfaces.GateDecision`) is soft (training:
straight-through values scale the update) or hard (eval: only the active tokens run,
packed across the batch without padding). An attention gate hides the inactive tokens
from attention; one that ``gates_mlp`` gates the MLP with the same decision; a
``per_sample`` gate skips attention and MLP of whole samples. An attention gate cannot
share a block with a merger.

Example -- a new attention variant, and a per-token MLP gate, by configuration only::

    @VIT_LAYERS.register_module()
    class TalkingHeadsAttention(Attention): ...      # the same forward, other logits

    @VIT_LAYERS.register_module()
    class ThresholdGate(AddsParameters, TokenGate):
        def __init__(self, dim, **kwargs):
            super().__init__()
            self.score = nn.Linear(dim, 1)
        def forward(self, x, ctx):
            keep = self.score(x)[..., 0] > 0
            return GateDecision(keep, hard=True), ctx.with_aux('rate', keep.float().mean())

    backbone = dict(type='ComposableViT', arch='b', block_cfg=dict(
        attn_cfg=dict(type='TalkingHeadsAttention'), mlp_gate=dict(type='ThresholdGate')))

Cost: :meth:`Block.macs` adds up its parts' multiply-adds for the tokens that ran
(``projects/vit/cost.py``); a forward that carries a ``cost.MacsRecord`` records it.

``AddsParameters`` (``param_roles.py``) marks the gate's parameters as new (allowed
missing from pretrained checkpoints) and trainable when the backbone is frozen.
"""
from typing import Callable, Mapping, Optional, Sequence, Tuple

import torch
from mmcv.cnn.bricks.drop import DropPath
from torch import Tensor, nn

from .context import TokenContext
from .cost import record
from .interfaces import SLOT_BASES, GateDecision
from .parts import Attention, LayerScale, Mlp  # noqa: F401  (re-exported)
from .registry import LayerCfg, build_layer


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
        self.attn_gate = build_layer(attn_gate, dim=dim) if attn_gate is not None else None
        self._check_parts()

    # ----------------------------------------------------------------- checks
    def _check_parts(self) -> None:
        for slot, attr in (('attn_cfg', 'attn'), ('mlp_cfg', 'mlp'), ('merger', 'merger'),
                           ('mlp_gate', 'mlp_gate'), ('adapter', 'adapter'),
                           ('attn_gate', 'attn_gate')):
            part = getattr(self, attr)
            base = SLOT_BASES[slot]
            if part is not None and not isinstance(part, base):
                raise TypeError(f'Block: {type(part).__name__} is configured as the '
                                f'{slot!r} part but does not implement the slot: subclass '
                                f'{base.__module__}.{base.__name__}.')
        for slot in ('mlp_gate', 'attn_gate'):  # a gate says which slot it belongs in
            part = getattr(self, slot)
            if part is not None and part.slot != slot:
                raise ValueError(f'Block: {type(part).__name__} belongs in the '
                                 f'{part.slot!r} slot, not {slot!r}; configure it under '
                                 f'block_cfg=dict({part.slot}=...).')
        attn = type(self.attn).__name__
        if self.merger is not None and not self.attn.provides_metric:
            raise ValueError(f'Block: the attention {attn} provides no token-matching '
                             f'metric, so the token merger {type(self.merger).__name__} '
                             'cannot run after it. Merge in other layers '
                             '(block_overrides) or use an attention that provides one.')
        if self.attn_gate is not None:
            self._check_attn_gate()

    def _check_attn_gate(self) -> None:
        gate = type(self.attn_gate).__name__
        if self.merger is not None:
            raise ValueError(f'Block: the attention gate {gate} cannot be combined with '
                             'a token merger in the same block (merging matches on the '
                             'keys of every token). Gate the MLP (mlp_gate) instead, or '
                             'merge in other layers (block_overrides).')
        if self.attn_gate.gates_mlp and self.mlp_gate is not None:
            raise ValueError(f'Block: {gate} gates the MLP too (gates_mlp=True); remove '
                             'the mlp_gate of this block.')
        if not self.attn_gate.per_sample and not (self.attn.packs and self.attn.masks_keys):
            raise ValueError(f'Block: the attention gate {gate} needs an attention that '
                             'hides keys (masks_keys) and runs packed rows (packs, to '
                             f'save compute in eval); {type(self.attn).__name__} declares '
                             'no such ability.')

    # ------------------------------------------------------------ sub-blocks
    def forward_attn(self, x: Tensor, ctx: TokenContext,
                     need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        if need_metric:
            y, metric = self.attn(self.norm1(x), ctx, need_metric=True)
        else:
            y, metric = self.attn(self.norm1(x), ctx)
        return x + self.drop_path(self.ls1(y)), metric

    def mlp_branch(self, x: Tensor) -> Tensor:
        return self.drop_path(self.ls2(self.mlp(self.norm2(x))))

    def _decide(self, gate: nn.Module, x: Tensor, ctx: TokenContext
                ) -> Tuple[Optional[GateDecision], TokenContext]:
        """The gate's decision on ``x``, recorded in ``ctx.masks`` (None: every token,
        as in the complete-model pass)."""
        if gate is None or not ctx.gated:
            return None, ctx
        decision, ctx = gate(x, ctx)
        if decision is not None:
            ctx = ctx.with_mask(gate.mask_name, decision.keep)
        return decision, ctx

    def forward_mlp(self, x: Tensor, ctx: TokenContext,
                    decision: Optional[GateDecision] = None) -> Tuple[Tensor, TokenContext]:
        """MLP and adapter; ``decision`` is the MLP gate's unless an attention gate that
        gates the MLP too passes its own."""
        if decision is None:
            decision, ctx = self._decide(self.mlp_gate, x, ctx)
        if decision is None:
            out = x + self.mlp_branch(x)
        elif decision.hard and not self.training:
            out = self._add_on_active(x, decision.keep,
                                      lambda rows, _: self.mlp_branch(rows))
        else:
            out = x + self.mlp_branch(x) * decision.keep[..., None].to(x.dtype)
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

    def gated_attn(self, x: Tensor, decision: GateDecision, ctx: TokenContext) -> Tensor:
        """Attention for the active tokens only: inactive tokens neither attend nor are
        attended to, and keep their value. A hard decision in eval runs the active
        tokens alone (``forward_packed``); otherwise the dense attention hides the
        inactive keys and the straight-through mask scales the update (its gradient
        reaches the gate through that product)."""
        mask = decision.keep
        if decision.hard and not self.training:
            return self._add_on_active(x, mask, lambda rows, lengths: self.ls1(
                self.attn.forward_packed(self.norm1(rows), lengths, ctx)))
        attend = mask if decision.hard else mask.detach() > 0.5
        y, _ = self.attn(self.norm1(x), ctx, attend=attend)
        return x + self.drop_path(self.ls1(y)) * mask[..., None].to(x.dtype)

    def _sample_gated(self, x: Tensor, decision: GateDecision,
                      ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        """A per-sample gate (B,) skips attention and MLP of whole samples; the adapter
        still runs on every sample. A hard decision in eval runs the kept samples
        alone."""
        keep = decision.keep
        if decision.hard and not self.training:
            idx = keep.nonzero().squeeze(1)
            x1 = y = x
            if idx.numel():
                groups = None if ctx.groups is None else ctx.groups.select(idx)
                inner, _ = self.forward_attn(x[idx], ctx._replace(groups=groups))
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
        out, after = self._forward(x, ctx)
        # what ran, when this forward records its cost (cost.executed_macs); the
        # decisions of this layer are in the context's masks
        return out, record(after, lambda: self.macs(
            x.shape[1], ctx.num_prefix, layer_masks(after), out.shape[1], ctx.gated)[0])

    # ------------------------------------------------------------------ cost
    def macs(self, num_tokens: int, num_prefix: int = 1,
             masks: Optional[Mapping[str, Tensor]] = None,
             tokens_out: Optional[int] = None, gated: bool = True) -> Tuple[float, int]:
        """Multiply-adds per image of this block on ``num_tokens`` tokens, and the
        tokens it leaves.

        masks: this layer's gate decisions by kind ('mlp', 'attn', 'block', 'layer'),
            as in ``ctx.masks``. Only exact (bool) decisions in eval save work, as in
            the forward: attention then runs per sample on its active tokens, the MLP
            on the active tokens, a per-sample gate skips whole samples. None: every
            token runs every part.
        tokens_out: the tokens the merger left in a real forward (default: its count).
        gated: False for the complete-model pass, which does not run the gates.
        """
        saving = {} if masks is None or self.training else \
            {k: m for k, m in masks.items() if m.dtype == torch.bool}
        n, prefix = num_tokens, num_prefix
        merge, n_out = 0.0, n
        if self.merger is not None:
            merge = self.merger.macs(n, prefix, self.attn.metric_dims)
            n_out = self.merger.tokens_after(n, prefix) if tokens_out is None else tokens_out
        side = [(self.adapter, n_out)]
        if gated:  # a gate scores the tokens entering its slot
            side += [(self.attn_gate, n), (self.mlp_gate, n_out)]
        side_macs = sum(part.macs(m) for part, m in side if part is not None)
        if 'layer' in saving:  # per sample: attention and MLP of the kept samples only
            ran = saving['layer'].float().mean().item()
            return ran * (self.attn.macs(n, prefix) + self.mlp.macs(n)) + side_macs, n
        attn_keep = saving.get('attn', saving.get('block'))
        mlp_keep = saving.get('mlp', saving.get('block'))
        if attn_keep is None:
            attn = self.attn.macs(n, prefix)
        else:  # packed: each sample attends among its own active tokens
            counts, samples = attn_keep.sum(1).unique(return_counts=True)
            attn = sum(k * self.attn.macs(c, prefix) for c, k in
                       zip(counts.tolist(), samples.tolist())) / attn_keep.shape[0]
        rows = n_out if mlp_keep is None else mlp_keep.sum().item() / mlp_keep.shape[0]
        return attn + merge + self.mlp.macs(rows) + side_macs, n_out

    def _forward(self, x: Tensor, ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        decision, ctx = self._decide(self.attn_gate, x, ctx)
        if decision is not None and self.attn_gate.per_sample:
            return self._sample_gated(x, decision, ctx)
        if decision is not None:
            x = self.gated_attn(x, decision, ctx)
            return self.forward_mlp(x, ctx, decision if self.attn_gate.gates_mlp else None)
        need_metric = self.merger is not None and self.merger.needs_metric(ctx)
        x, metric = self.forward_attn(x, ctx, need_metric)
        if self.merger is not None:
            x, ctx = self.merger(x, metric, ctx)
        return self.forward_mlp(x, ctx)


def layer_masks(ctx: TokenContext) -> Mapping[str, Tensor]:
    """The gate decisions of the context's current layer, by kind."""
    found = {kind: ctx.masks.get(f'{kind}.{ctx.layer}') for kind in MASK_KINDS}
    return {kind: mask for kind, mask in found.items() if mask is not None}


#: the kinds of gate decision a block records (``TokenGate.mask_name``)
MASK_KINDS = ('mlp', 'attn', 'block', 'layer')
