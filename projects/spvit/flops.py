"""SPViT's complexity: multiply-accumulates (MACs, the fvcore / mmengine "FLOPs") of
a compact architecture, and the same count as a differentiable function of the gates.

Every term is a formula of the one cost model (:mod:`projects.vit.cost`, through
``arch.op_macs`` and the parts' ``macs``): the patch embedding, per layer the attention
op (MSA, a bottleneck conv on the patches, or skip) and the FFN of its own width, and
optional ``extra_macs`` (a classifier head). The compact model's
``cost.executed_macs`` equals :func:`arch_macs` of its architecture.

The gate function uses the straight-through surrogate of ``gates.surrogate_gates``:
attention = g1 conv1x1 + g2 (conv3x3 - conv1x1) + g3 (MSA - conv3x3), FFN = (kept
units) x the MACs of one unit.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..core.engine.ddp import unwrap_model
from ..vit import cost
from ..vit.context import TokenContext
from ..vit.interfaces import AuxLossTerm
from ..vit.registry import VIT_LAYERS
from .arch import OPS, SPViTArch, op_macs
from .gates import surrogate_gates
from .supernet import SPViTAttention, SPViTGatedMlp


def arch_macs(arch: SPViTArch, dim: int, num_heads: int, grid: Tuple[int, int],
              patch_size: int, num_prefix: int = 1, in_channels: int = 3,
              extra_macs: int = 0) -> float:
    """MACs of one image through the compact model of ``arch``."""
    n = grid[0] * grid[1]
    t = n + num_prefix
    total = cost.patch_embed(n, in_channels, patch_size, dim) + extra_macs
    for i, op in enumerate(arch.ops):
        total += op_macs(op, dim, num_heads, t, num_prefix) + \
            cost.mlp(t, dim, arch.keep_count(i))
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


def _gated_macs(backbone: nn.Module, grid: Tuple[int, int], num_prefix: int,
                extra_macs: int, gate_values: Callable[[Tensor], Tensor]) -> Tensor:
    """MACs of the model the gate logits select, with ``gate_values(theta)`` the value
    of each gate (the surrogate, all off, all on); parts without gates count as
    themselves (``macs``)."""
    n = grid[0] * grid[1]
    t = n + num_prefix
    total = torch.tensor(float(backbone.embed_macs(n) + extra_macs))
    for block, (attn, mlp) in zip(backbone.blocks, gated_layers(backbone)):
        if attn is not None:
            g = torch.cumprod(gate_values(attn.theta), 0)
            ops = [attn.op_macs(op, t, num_prefix) for op in OPS]  # skip, 1x1, 3x3, msa
            total = total + sum(g[i] * (ops[i + 1] - ops[i]) for i in range(3))
        else:
            total = total + block.attn.macs(t, num_prefix)
        if mlp is not None:
            unit = cost.mlp(t, mlp.fc1.in_features, 1)
            total = total + unit * gate_values(mlp.theta).sum()
        else:
            total = total + block.mlp.macs(t)
    return total


def supernet_macs(backbone: nn.Module, grid: Tuple[int, int], num_prefix: int = 1,
                  extra_macs: int = 0) -> Tensor:
    """Differentiable MACs of the model the gates currently select (surrogate gates)."""
    return _gated_macs(backbone, grid, num_prefix, extra_macs, surrogate_gates)


def min_macs(backbone: nn.Module, grid: Tuple[int, int], num_prefix: int = 1,
             extra_macs: int = 0) -> float:
    """MACs with every gate off (what no FLOPs target can go below)."""
    with torch.no_grad():
        return float(_gated_macs(backbone, grid, num_prefix, extra_macs, torch.zeros_like))


def full_macs(backbone: nn.Module, grid: Tuple[int, int], num_prefix: int = 1,
              extra_macs: int = 0) -> float:
    """MACs with every gate on (MSA and every FFN unit where the gates choose)."""
    with torch.no_grad():
        return float(_gated_macs(backbone, grid, num_prefix, extra_macs, torch.ones_like))


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
