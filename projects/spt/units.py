"""The tensors SPT scores and allocates on, named like the official code.

A *unit* is a weight matrix or a vector that gets its own structured/unstructured
decision. The fused ``attn.qkv`` of PYRAViT is split into three units (its q, k and v
row blocks), as the official code scores separate q/k/v layers. Names follow the
official ``blocks.{i}.attn.q.weight`` convention; ``param`` is the real parameter and
``rows`` the row range of that parameter the unit covers.
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


def unit_slice(unit: Unit, tensor):
    """The part of ``tensor`` (shaped like ``unit.param``) that ``unit`` covers."""
    return tensor if unit.rows is None else tensor[unit.rows[0]:unit.rows[1]]
