"""The tensors SPT scores and allocates on, named like the official code.

A *unit* is a weight matrix or a vector that gets its own structured/unstructured
decision. The fused qkv of PYRAViT (``attn.qkv``) and of Swin (``attn.w_msa.qkv``) is
split into three units (its q, k and v row blocks), as the official code scores
separate q/k/v layers. Names follow the official ``blocks.{i}.attn.q.weight``
convention; ``param`` is the real parameter and ``rows`` the row range of that
parameter the unit covers. :func:`backbone_units` picks the discovery for a backbone.
"""
from collections import OrderedDict
from typing import Dict, NamedTuple, Optional, Tuple

from torch import Tensor, nn

MATRIX_TYPES = ('q', 'k', 'v', 'proj', 'fc1', 'fc2')


class Unit(NamedTuple):
    name: str  # e.g. 'blocks.3.attn.q.weight'
    param: str  # e.g. 'blocks.3.attn.qkv.weight'
    rows: Optional[Tuple[int, int]]  # row range inside ``param`` (None = whole tensor)
    shape: Tuple[int, ...]  # shape of the unit itself
    kind: str  # 'matrix' or 'vector'
    block: int  # block index, -1 for the final norm
    op: str  # 'q', 'k', 'v', 'proj', 'fc1', 'fc2' or the vector's role

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class _UnitTable:
    """The units of one model in scoring order (the order breaks score ties)."""

    def __init__(self, model: nn.Module) -> None:
        self.params = dict(model.named_parameters())
        self.units: Dict[str, Unit] = OrderedDict()

    def add(self, name: str, param: str, kind: str, block: int, op: str,
            rows: Optional[Tuple[int, int]] = None) -> None:
        p = self.params[param]
        shape = tuple(p.shape) if rows is None else (rows[1] - rows[0],) + tuple(p.shape[1:])
        self.units[name] = Unit(name, param, rows, shape, kind, block, op)

    def add_vector_if_present(self, name: str, block: int, op: str) -> None:
        if name in self.params:
            self.add(name, name, 'vector', block, op)

    def add_block(self, pre: str, block: int, qkv: str, linears: Tuple[Tuple[str, str], ...],
                  norms: Tuple[str, ...] = ('norm1', 'norm2')) -> None:
        """One transformer block: q/k/v as row thirds of the fused ``qkv`` linear (unit
        names ``<parent>.q.weight`` etc.) and of its bias, the ``(op, module)`` linears
        with their biases, and the norms' weight and bias."""
        parent = qkv.rpartition('.')[0]
        dim = self.params[f'{pre}{qkv}.weight'].shape[1]
        for j, t in enumerate(('q', 'k', 'v')):
            rows = (j * dim, (j + 1) * dim)
            self.add(f'{pre}{parent}.{t}.weight', f'{pre}{qkv}.weight', 'matrix', block, t,
                     rows)
            if f'{pre}{qkv}.bias' in self.params:
                self.add(f'{pre}{parent}.{t}.bias', f'{pre}{qkv}.bias', 'vector', block,
                         f'{t}.bias', rows)
        for op, mod in linears:
            self.add(f'{pre}{mod}.weight', f'{pre}{mod}.weight', 'matrix', block, op)
            self.add_vector_if_present(f'{pre}{mod}.bias', block, f'{op}.bias')
        for norm in norms:
            for leaf in ('weight', 'bias'):
                name = f'{pre}{norm}.{leaf}'
                self.add(name, name, 'vector', block, f'{norm}.{leaf}')


def vit_units(model: nn.Module) -> Dict[str, Unit]:
    """Units of a ComposableViT (timm naming): per block q/k/v/proj/fc1/fc2 weights and
    their biases, norm1/norm2, LayerScale gammas; and the final norm. Excluded like in
    the official code: patch embedding, position embedding, class token, head (and
    PYRA's generators, which are trained as part of PYRA, outside the budget)."""
    table = _UnitTable(model)
    for i in range(len(model.blocks)):
        pre = f'blocks.{i}.'
        table.add_block(pre, i, 'attn.qkv',
                        (('proj', 'attn.proj'), ('fc1', 'mlp.fc1'), ('fc2', 'mlp.fc2')))
        for ls in ('ls1', 'ls2'):
            table.add_vector_if_present(f'{pre}{ls}.gamma', i, ls)
    for leaf in ('weight', 'bias'):
        table.add_vector_if_present(f'norm.{leaf}', -1, f'norm.{leaf}')
    return table.units


def swin_units(model: nn.Module) -> Dict[str, Unit]:
    """Units of mmpretrain's ``SwinTransformer``: per block q/k/v (thirds of
    ``attn.w_msa.qkv``), proj, fc1 (``ffn.layers.0.0``), fc2 (``ffn.layers.1``) weights
    and biases, norm1/norm2; per patch merging its ``reduction`` matrix and norm; the
    output norms. ``block`` counts blocks over all stages. Excluded like the patch and
    position embeddings of the ViT: patch embedding, relative position bias tables,
    absolute position embedding, head. (The official SPT code for Swin was never
    released; this applies the ViT rules to every Swin layer of the same kind.)"""
    table = _UnitTable(model)
    index = 0
    for s, stage in enumerate(model.stages):
        for j in range(len(stage.blocks)):
            table.add_block(f'stages.{s}.blocks.{j}.', index, 'attn.w_msa.qkv',
                            (('proj', 'attn.w_msa.proj'), ('fc1', 'ffn.layers.0.0'),
                             ('fc2', 'ffn.layers.1')))
            index += 1
        down = f'stages.{s}.downsample.'
        if f'{down}reduction.weight' in table.params:
            table.add(f'{down}reduction.weight', f'{down}reduction.weight', 'matrix',
                      index - 1, 'reduction')
            for leaf in ('weight', 'bias'):
                table.add_vector_if_present(f'{down}norm.{leaf}', index - 1,
                                            f'reduction_norm.{leaf}')
    for name in sorted(table.params):
        head, _, leaf = name.partition('.')
        if head.startswith('norm') and head[4:].isdigit() and leaf in ('weight', 'bias'):
            table.add(name, name, 'vector', -1, f'{head}.{leaf}')
    return table.units


def backbone_units(model: nn.Module) -> Dict[str, Unit]:
    """The units of a supported backbone (ComposableViT / PYRAViT / SPTViT, mmpretrain
    Swin / SPTSwin)."""
    from mmpretrain.models import SwinTransformer

    from ..vit.backbone import ComposableViT
    if isinstance(model, ComposableViT):
        return vit_units(model)
    if isinstance(model, SwinTransformer):
        return swin_units(model)
    raise TypeError(f'SPT supports ComposableViT (PYRAViT) and mmpretrain SwinTransformer backbones, not '
                    f'{type(model).__name__}.')


def unit_slice(unit: Unit, tensor):
    """The part of ``tensor`` (shaped like ``unit.param``) that ``unit`` covers."""
    return tensor if unit.rows is None else tensor[unit.rows[0]:unit.rows[1]]


def scored_params(units: Dict[str, Unit], prefix: str = '') -> list:
    """Names (with ``prefix``, e.g. ``'backbone.'``) of the parameters the units cover."""
    return sorted({f'{prefix}{u.param}' for u in units.values()})


def scores_per_unit(units: Dict[str, Unit], scores: Dict[str, Tensor],
                    prefix: str = '') -> Dict[str, Tensor]:
    """Per-parameter scores (keyed like :func:`scored_params`) cut into unit scores."""
    return {n: unit_slice(u, scores[f'{prefix}{u.param}']) for n, u in units.items()}
