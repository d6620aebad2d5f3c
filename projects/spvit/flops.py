"""SPViT's complexity: multiply-accumulates (MACs, the fvcore / mmengine "FLOPs") of
a compact architecture, and the same count as a differentiable function of the gates.

Counted per image: the patch embedding, per layer the attention op and the FFN, and
optional ``extra_macs`` (a classifier head). With N patch tokens, T = N + prefix
tokens, d channels, d_h = d / heads, k kept FFN units:

- MSA: 4 T d^2 (q, k, v, projection) + 2 T^2 d (QK^T and AV)
- conv1x1: 2 N d d_h; conv3x3: 9 N d d_h + N d_h d; skip: 0
- FFN: 2 T d k

Norms, BN, activations and additions are left out (< 1 % of a ViT, and the official
count and the paper's tables treat them as noise). The gate function uses the
straight-through surrogate of ``gates.surrogate_gates``:
attention = g1 conv1x1 + g2 (conv3x3 - conv1x1) + g3 (MSA - conv3x3).
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..core.engine.ddp import unwrap_model
from ..vit.context import TokenContext
from ..vit.interfaces import AuxLossTerm
from ..vit.registry import VIT_LAYERS
from .arch import SPViTArch
from .gates import surrogate_gates
from .supernet import SPViTAttention, SPViTGatedMlp


def op_macs(op: str, dim: int, num_heads: int, num_patches: int, num_tokens: int) -> int:
    dh = dim // num_heads
    return {'skip': 0,
            'conv1x1': 2 * num_patches * dim * dh,
            'conv3x3': 10 * num_patches * dim * dh,
            'msa': 4 * num_tokens * dim * dim + 2 * num_tokens * num_tokens * dim}[op]


def embed_macs(dim: int, num_patches: int, patch_size: int, in_channels: int) -> int:
    return num_patches * dim * in_channels * patch_size * patch_size


def arch_macs(arch: SPViTArch, dim: int, num_heads: int, grid: Tuple[int, int],
              patch_size: int, num_prefix: int = 1, in_channels: int = 3,
              extra_macs: int = 0) -> int:
    """MACs of one image through the compact model of ``arch``."""
    n = grid[0] * grid[1]
    t = n + num_prefix
    total = embed_macs(dim, n, patch_size, in_channels) + extra_macs
    for i, op in enumerate(arch.ops):
        total += op_macs(op, dim, num_heads, n, t) + 2 * t * dim * arch.keep_count(i)
    return total


def gated_layers(backbone: nn.Module):
    """(attention part, MLP part) of every block of a supernet (either may be None)."""
    out = []
    for block in backbone.blocks:
        attn = block.attn if isinstance(block.attn, SPViTAttention) else None
        mlp = block.mlp if isinstance(block.mlp, SPViTGatedMlp) else None
        out.append((attn, mlp))
    if not any(a is not None or m is not None for a, m in out):
        raise ValueError('this backbone has no SPViT gates: build it with attn_cfg='
                         "dict(type='SPViTAttention') and mlp_cfg=dict(type='SPViTGatedMlp').")
    return out


def _fixed_attn(block, n: int, t: int) -> int:
    """MACs of a non-searched attention part (plain MSA, compact conv or skip)."""
    from .compact import SPViTConv, SPViTSkip
    attn = block.attn
    dim = block.norm1.normalized_shape[0]
    if isinstance(attn, SPViTSkip):
        return 0
    if isinstance(attn, SPViTConv):
        return op_macs('conv1x1' if attn.kernel == 1 else 'conv3x3', dim, attn.num_heads, n, t)
    return op_macs('msa', dim, attn.num_heads, n, t)


def supernet_macs(backbone: nn.Module, grid: Tuple[int, int], num_prefix: int = 1,
                  extra_macs: int = 0) -> Tensor:
    """Differentiable MACs of the model the gates currently select (surrogate gates)."""
    dim = backbone.embed_dims
    n = grid[0] * grid[1]
    t = n + num_prefix
    proj = backbone.patch_embed.proj
    total = torch.tensor(float(embed_macs(dim, n, backbone.patch_size, proj.in_channels)
                               + extra_macs))
    for block, (attn, mlp) in zip(backbone.blocks, gated_layers(backbone)):
        if attn is not None:
            h = attn.num_heads
            c1, c3, msa = (op_macs(o, dim, h, n, t) for o in ('conv1x1', 'conv3x3', 'msa'))
            g = torch.cumprod(surrogate_gates(attn.theta), 0)
            total = total + g[0] * c1 + g[1] * (c3 - c1) + g[2] * (msa - c3)
        else:
            total = total + _fixed_attn(block, n, t)
        if mlp is not None:
            total = total + 2 * t * dim * surrogate_gates(mlp.theta).sum()
        else:
            total = total + 2 * t * dim * block.mlp.fc1.out_features
    return total


def min_macs(backbone: nn.Module, grid: Tuple[int, int], num_prefix: int = 1,
             extra_macs: int = 0) -> int:
    """MACs with every gate off (what no FLOPs target can go below)."""
    dim, n = backbone.embed_dims, grid[0] * grid[1]
    t = n + num_prefix
    total = embed_macs(dim, n, backbone.patch_size, backbone.patch_embed.proj.in_channels)
    for block, (attn, mlp) in zip(backbone.blocks, gated_layers(backbone)):
        total += 0 if attn is not None else _fixed_attn(block, n, t)
        total += 0 if mlp is not None else 2 * t * dim * block.mlp.fc1.out_features
    return total + extra_macs


def full_macs(backbone: nn.Module, grid: Tuple[int, int], num_prefix: int = 1,
              extra_macs: int = 0) -> int:
    """MACs with every gate on (the dense model)."""
    dim, n = backbone.embed_dims, grid[0] * grid[1]
    t = n + num_prefix
    total = embed_macs(dim, n, backbone.patch_size, backbone.patch_embed.proj.in_channels)
    for block in backbone.blocks:
        heads = block.attn.num_heads
        total += op_macs('msa', dim, heads, n, t) + 2 * t * dim * block.mlp.fc1.out_features
    return total + extra_macs


@VIT_LAYERS.register_module()
class SPViTFlopsLoss(AuxLossTerm):
    """``loss_flops = weight * (target - F / unit)^2`` for the ViT's ``aux_losses``.

    F is :func:`supernet_macs` of the gate logits of the backbone that calls it
    (``forward(ctx, backbone)``) at this forward's grid (``ctx.grid``). ``setup`` runs
    when the backbone is built: it turns ``target_ratio`` into a target and refuses a
    target below the all-skip minimum there.

    Args:
        target: FLOPs target in ``unit`` MACs (official: GMACs, unit=1e9).
        weight: lambda (official: Ti 20, S 3.0, B 0.08).
        extra_macs: MACs outside the backbone counted in the target (the head).
    """

    def __init__(self, target: Optional[float] = None, weight: float = 1.0,
                 unit: float = 1e9, extra_macs: int = 0, name: str = 'loss_flops',
                 target_ratio: Optional[float] = None) -> None:
        super().__init__()
        if (target is None) == (target_ratio is None):
            raise ValueError('SPViTFlopsLoss: give exactly one of target (in unit MACs) '
                             'and target_ratio (a fraction of the full model).')
        if (target is not None and target <= 0) or unit <= 0 or \
                (target_ratio is not None and not 0 < target_ratio <= 1):
            raise ValueError(f'SPViTFlopsLoss: target ({target}) and unit ({unit}) must be '
                             f'positive, target_ratio ({target_ratio}) in (0, 1].')
        self.target_ratio = target_ratio
        if 'loss' not in name:
            raise ValueError(f"SPViTFlopsLoss: name {name!r} must contain 'loss'.")
        self.target, self.weight, self.unit = target, weight, unit
        self.extra_macs, self.name = extra_macs, name

    def setup(self, backbone: nn.Module, grid: Optional[Tuple[int, int]] = None) -> None:
        """Check the target is reachable at ``grid`` (default: the backbone's build
        grid); called by the backbone at build."""
        grid = grid or backbone.grid
        prefix = int(backbone.with_cls_token)
        if self.target_ratio is not None:
            full = full_macs(backbone, grid, prefix, self.extra_macs)
            self.target = self.target_ratio * full / self.unit
        low = min_macs(backbone, grid, prefix, self.extra_macs) / self.unit
        if self.target < low:
            raise ValueError(
                f'SPViTFlopsLoss: target {self.target} is below the all-skip minimum '
                f'{low:.4g} (x{self.unit:g} MACs) of this model at grid {grid} (patch '
                'embedding and fixed parts); raise the target.')

    def flops(self, backbone: nn.Module, grid: Tuple[int, int], num_prefix: int) -> Tensor:
        return supernet_macs(backbone, grid, num_prefix, self.extra_macs) / self.unit

    def forward(self, ctx: TokenContext, backbone: nn.Module) -> Dict[str, Tensor]:
        f = self.flops(backbone, ctx.grid, ctx.num_prefix)
        return {self.name: self.weight * (self.target - f) ** 2, 'flops': f.detach()}


def find_backbone(model: nn.Module) -> nn.Module:
    """The SPViT backbone of a classifier / segmentor (or the backbone itself)."""
    model = unwrap_model(model)
    backbone = getattr(model, 'backbone', model)
    if not hasattr(backbone, 'blocks'):
        raise ValueError(f'{type(model).__name__} has no ViT backbone with blocks.')
    return backbone


def hard_arch_macs(backbone: nn.Module, grid: Optional[Sequence[int]] = None,
                   extra_macs: int = 0) -> float:
    """MACs of the hard (eval) architecture of a supernet."""
    with torch.no_grad():
        return float(supernet_macs(backbone, tuple(grid or backbone.grid),
                                   int(backbone.with_cls_token), extra_macs))
