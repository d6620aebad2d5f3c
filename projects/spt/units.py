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

from torch import nn

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


def vit_units(model: nn.Module) -> Dict[str, Unit]:
    """Units of a PYRAViT (timm naming): per block q/k/v/proj/fc1/fc2 weights and
    their biases, norm1/norm2, LayerScale gammas; and the final norm. Excluded like in
    the official code: patch embedding, position embedding, class token, head (and
    PYRA's generators, which are trained as part of PYRA, outside the budget)."""
    params = dict(model.named_parameters())
    units: Dict[str, Unit] = OrderedDict()

    def add(name, param, rows, kind, block, op):
        p = params[param]
        shape = tuple(p.shape) if rows is None else (rows[1] - rows[0],) + tuple(p.shape[1:])
        units[name] = Unit(name, param, rows, shape, kind, block, op)

    for i, block in enumerate(model.blocks):
        pre = f'blocks.{i}.'
        dim = block.attn.qkv.in_features
        for j, t in enumerate(('q', 'k', 'v')):
            add(f'{pre}attn.{t}.weight', f'{pre}attn.qkv.weight', (j * dim, (j + 1) * dim),
                'matrix', i, t)
            if f'{pre}attn.qkv.bias' in params:
                add(f'{pre}attn.{t}.bias', f'{pre}attn.qkv.bias', (j * dim, (j + 1) * dim),
                    'vector', i, f'{t}.bias')
        for op, mod in (('proj', 'attn.proj'), ('fc1', 'mlp.fc1'), ('fc2', 'mlp.fc2')):
            add(f'{pre}{mod}.weight', f'{pre}{mod}.weight', None, 'matrix', i, op)
            if f'{pre}{mod}.bias' in params:
                add(f'{pre}{mod}.bias', f'{pre}{mod}.bias', None, 'vector', i, f'{op}.bias')
        for norm in ('norm1', 'norm2'):
            for leaf in ('weight', 'bias'):
                add(f'{pre}{norm}.{leaf}', f'{pre}{norm}.{leaf}', None, 'vector', i,
                    f'{norm}.{leaf}')
        for ls in ('ls1', 'ls2'):
            if f'{pre}{ls}.gamma' in params:
                add(f'{pre}{ls}.gamma', f'{pre}{ls}.gamma', None, 'vector', i, ls)
    for leaf in ('weight', 'bias'):
        if f'norm.{leaf}' in params:
            add(f'norm.{leaf}', f'norm.{leaf}', None, 'vector', -1, f'norm.{leaf}')
    return units


def swin_units(model: nn.Module) -> Dict[str, Unit]:
    """Units of mmpretrain's ``SwinTransformer``: per block q/k/v (thirds of
    ``attn.w_msa.qkv``), proj, fc1 (``ffn.layers.0.0``), fc2 (``ffn.layers.1``) weights
    and biases, norm1/norm2; per patch merging its ``reduction`` matrix and norm; the
    output norms. ``block`` counts blocks over all stages. Excluded like the patch and
    position embeddings of the ViT: patch embedding, relative position bias tables,
    absolute position embedding, head. (The official SPT code for Swin was never
    released; this applies the ViT rules to every Swin layer of the same kind.)"""
    params = dict(model.named_parameters())
    units: Dict[str, Unit] = OrderedDict()

    def add(name, param, rows, kind, block, op):
        p = params[param]
        shape = tuple(p.shape) if rows is None else (rows[1] - rows[0],) + tuple(p.shape[1:])
        units[name] = Unit(name, param, rows, shape, kind, block, op)

    def add_bias(name, param, block, op):
        if param in params:
            add(name, param, None, 'vector', block, op)

    index = 0
    for s, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            pre = f'stages.{s}.blocks.{j}.'
            att = f'{pre}attn.w_msa.'
            dim = block.attn.w_msa.qkv.in_features
            for t, name in enumerate(('q', 'k', 'v')):
                rows = (t * dim, (t + 1) * dim)
                add(f'{att}{name}.weight', f'{att}qkv.weight', rows, 'matrix', index, name)
                if f'{att}qkv.bias' in params:
                    add(f'{att}{name}.bias', f'{att}qkv.bias', rows, 'vector', index,
                        f'{name}.bias')
            for op, mod in (('proj', 'attn.w_msa.proj'), ('fc1', 'ffn.layers.0.0'),
                            ('fc2', 'ffn.layers.1')):
                add(f'{pre}{mod}.weight', f'{pre}{mod}.weight', None, 'matrix', index, op)
                add_bias(f'{pre}{mod}.bias', f'{pre}{mod}.bias', index, f'{op}.bias')
            for norm in ('norm1', 'norm2'):
                for leaf in ('weight', 'bias'):
                    add_bias(f'{pre}{norm}.{leaf}', f'{pre}{norm}.{leaf}', index,
                             f'{norm}.{leaf}')
            index += 1
        down = f'stages.{s}.downsample.'
        if f'{down}reduction.weight' in params:
            add(f'{down}reduction.weight', f'{down}reduction.weight', None, 'matrix',
                index - 1, 'reduction')
            for leaf in ('weight', 'bias'):
                add_bias(f'{down}norm.{leaf}', f'{down}norm.{leaf}', index - 1,
                         f'reduction_norm.{leaf}')
    for name in sorted(params):
        head, _, leaf = name.partition('.')
        if head.startswith('norm') and head[4:].isdigit() and leaf in ('weight', 'bias'):
            add(name, name, None, 'vector', -1, f'{head}.{leaf}')
    return units


def backbone_units(model: nn.Module) -> Dict[str, Unit]:
    """The units of a supported backbone (PYRAViT / SPTViT, mmpretrain Swin / SPTSwin)."""
    from mmpretrain.models import SwinTransformer

    from ..pyra.backbone import PYRAViT
    if isinstance(model, PYRAViT):
        return vit_units(model)
    if isinstance(model, SwinTransformer):
        return swin_units(model)
    raise TypeError(f'SPT supports PYRAViT and mmpretrain SwinTransformer backbones, not '
                    f'{type(model).__name__}.')


def unit_slice(unit: Unit, tensor):
    """The part of ``tensor`` (shaped like ``unit.param``) that ``unit`` covers."""
    return tensor if unit.rows is None else tensor[unit.rows[0]:unit.rows[1]]
