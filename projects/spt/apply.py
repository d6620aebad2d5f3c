"""Module surgery: put the SPT layers an allocation asks for into any backbone.

Works on any ``nn.Module`` whose units (``units.py``) name ``nn.Linear``,
``nn.LayerNorm`` or ``LayerScale`` parameters; the pretrained tensors keep their names.
"""
from typing import Dict

import torch
from torch import nn

from ..vit.block import LayerScale
from .allocation import allocation_problems
from .layers import SPTLayer, SPTLayerNorm, SPTLayerScale, SPTLinear
from .units import Unit


def _get(model: nn.Module, path: str) -> nn.Module:
    for part in path.split('.'):
        model = getattr(model, part)
    return model


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition('.')
    setattr(_get(model, parent) if parent else model, leaf, new)


def _spt_module(model: nn.Module, path: str, units: Dict[str, Unit]) -> nn.Module:
    """The SPT replacement of module ``path`` (created on first use)."""
    module = _get(model, path)
    if isinstance(module, SPTLayer):
        return module
    if isinstance(module, nn.Linear):
        segs = {u.op: u.rows for u in units.values()
                if u.kind == 'matrix' and u.param == f'{path}.weight' and u.rows}
        new = SPTLinear.from_linear(module, segs or None)
    elif isinstance(module, nn.LayerNorm):
        new = SPTLayerNorm.from_norm(module)
    elif isinstance(module, LayerScale):
        new = SPTLayerScale.from_layer_scale(module)
    else:
        raise TypeError(f'SPT cannot tune {path} ({type(module).__name__}).')
    _set(model, path, new)
    return new


def check_allocation(alloc: dict, units: Dict[str, Unit], path: str = '') -> None:
    """The allocation must name units of this model with the same sizes, each in the
    list of its kind, with indices inside the unit; otherwise a ValueError names the
    file, the entries at fault and the fix (before any module is replaced)."""
    names = set(alloc['structured']) | set(alloc['full_vectors']) | set(alloc['sparse'])
    unknown = sorted(n for n in names if n not in units)
    wrong = sorted(n for n, k in alloc['numel'].items() if n in units and units[n].numel != k)
    if unknown or wrong:
        raise ValueError(
            f'SPT allocation {path} was computed for a different model: '
            f'unknown units {unknown[:5]}, size mismatches {wrong[:5]}. Recompute it for '
            'this architecture (delete the file and train with SPTRunner).')
    problems = allocation_problems(alloc, units)
    if problems:
        raise ValueError(
            f'SPT allocation {path} is inconsistent with this model: '
            + '; '.join(problems[:5]) + '. The file was edited or written by another '
            'tool; delete it and train with SPTRunner to recompute it, or fix these '
            'entries.')


def apply_allocation(model: nn.Module, units: Dict[str, Unit], alloc: dict,
                     structured_cfg: dict, path: str = '') -> None:
    """Replace the allocated modules of ``model`` by SPT layers (in place); ``alloc``
    must have passed :func:`check_allocation`."""
    kind = structured_cfg['type']
    if kind != alloc['structured_type'] or structured_cfg['rank'] != alloc['rank']:
        raise ValueError(
            f"spt_cfg.structured ({kind}, rank {structured_cfg['rank']}) differs from the "
            f"allocation {path} ({alloc['structured_type']}, rank {alloc['rank']}), whose "
            'structured/unstructured split depends on it; recompute the allocation '
            '(delete the file and train with SPTRunner) or set spt_cfg.structured back.')
    for name in alloc['structured']:
        unit = units[name]
        module = _spt_module(model, unit.param.rpartition('.')[0], units)
        seg = unit.op if unit.rows else 'all'
        module.add_structured(seg, kind, structured_cfg['rank'],
                              structured_cfg.get('scale', 1.0),
                              structured_cfg.get('dropout', 0.0))
    # vector / sparse entries, gathered per real parameter (q/k/v units share one)
    per_param: Dict[str, list] = {}
    for name in alloc['full_vectors']:
        unit = units[name]
        idx = torch.arange(unit.numel)
        per_param.setdefault(unit.param, []).append((unit, idx))
    for name, idx in alloc['sparse'].items():
        per_param.setdefault(units[name].param, []).append((units[name], idx))
    for param, parts in per_param.items():
        path, _, leaf = param.rpartition('.')
        module = _spt_module(model, path, units)
        flat = []
        for unit, idx in parts:
            start = unit.rows[0] if unit.rows else 0
            row_len = unit.numel // unit.shape[0]
            flat.append(idx + start * row_len)
        index = torch.cat(flat)
        if isinstance(module, SPTLinear):
            (module.add_sparse_weight if leaf == 'weight' else module.add_sparse_bias)(index)
        else:
            module.add_sparse(leaf, index)
