"""SPTViT: PYRAViT whose constructor builds the SPT structure from an allocation file,
so mmengine's optimizer and DDP wrapper see exactly the allocated parameters.

Everything pretrained is frozen; trainable are the sparse deltas, the LoRA / Adapter
modules and (with ``merge_mode='pyra'``) PYRA's generators, which are part of PYRA and
outside the SPT budget. Parameter names of the pretrained tensors are those of
PYRAViT, so pretrained checkpoints load unchanged and :meth:`folded_state_dict` loads
into a plain ``PYRAViT`` of the same arguments.
"""
from typing import Dict, Optional

import torch
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS
from torch import Tensor, nn

from ..core.checkpoint.vit_loader import load_vit_checkpoint
from ..core.transformer import LayerScale
from ..pyra.backbone import PYRAViT
from .cache import load_allocation
from .layers import SPT_LAYERS, SPTLayerNorm, SPTLayerScale, SPTLinear, merge_layer
from .sparse_linear import SparseDelta
from .structured import STRUCTURED_TYPES, Adapter, LoRA
from .units import Unit, vit_units

STRUCTURED_DEFAULTS = dict(type='lora', rank=8, scale=1.0, dropout=0.1)


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
    if isinstance(module, SPT_LAYERS):
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
    """The allocation must name units of this model with the same sizes."""
    names = set(alloc['structured']) | set(alloc['full_vectors']) | set(alloc['sparse'])
    unknown = sorted(n for n in names if n not in units)
    wrong = sorted(n for n, k in alloc['numel'].items() if n in units and units[n].numel != k)
    if unknown or wrong:
        raise ValueError(
            f'SPT allocation {path} was computed for a different model: '
            f'unknown units {unknown[:5]}, size mismatches {wrong[:5]}. Recompute it for '
            'this architecture (delete the file and train with SPTRunner).')


def apply_allocation(model: nn.Module, units: Dict[str, Unit], alloc: dict,
                     structured_cfg: dict) -> None:
    """Replace the allocated modules of ``model`` by SPT layers (in place)."""
    kind = structured_cfg['type']
    if kind != alloc['structured_type'] or structured_cfg['rank'] != alloc['rank']:
        raise ValueError(
            f"spt_cfg.structured ({kind}, rank {structured_cfg['rank']}) differs from the "
            f"allocation ({alloc['structured_type']}, rank {alloc['rank']}), whose "
            'structured/unstructured split depends on it; recompute the allocation.')
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


class _PlainView:
    """What ``load_vit_checkpoint`` needs of the model, without the SPT tensors: the
    pretrained checkpoint is checked strictly against the plain PYRAViT key set."""

    def __init__(self, model: 'SPTViT') -> None:
        self.model = model
        self.interpolate_mode = model.interpolate_mode

    def state_dict(self):
        return {k: v for k, v in self.model.state_dict().items()
                if k in self.model.plain_keys}

    def load_state_dict(self, state, strict=False):
        return self.model.load_state_dict(state, strict=False)


@SEG_MODELS.register_module()
@PRETRAIN_MODELS.register_module()
class SPTViT(PYRAViT):
    """PYRAViT tuned with SPT (SPT-LoRA or SPT-Adapter).

    Args:
        spt_cfg: ``dict(allocation=<cache .pth>, budget=..., structured=dict(type=
            'lora'|'adapter', rank=8, scale=1.0, dropout=0.1), rule='thesis'|
            'official', structured_only=False, sensitivity=dict(num_samples=800,
            batch_size=32, train_mode=False))``. Only ``allocation`` and
            ``structured`` are read here; the rest drives :class:`SPTRunner`, which
            computes the allocation file when it is missing.
        **kwargs: PYRAViT arguments (``lora_cfg`` must be None; ``frozen`` is implied).
    """

    def __init__(self, spt_cfg: dict, lora_cfg: Optional[dict] = None,
                 frozen: bool = True, **kwargs) -> None:
        if lora_cfg:
            raise ValueError('SPTViT builds its own LoRA modules from the allocation; '
                             'drop lora_cfg.')
        if not frozen:
            raise ValueError('SPTViT always freezes the pretrained weights (frozen=True).')
        if not isinstance(spt_cfg, dict) or 'allocation' not in spt_cfg:
            raise ValueError('spt_cfg must be a dict with an `allocation` file path.')
        super().__init__(lora_cfg=None, frozen=False, **kwargs)
        self.frozen = True
        self.spt_cfg = dict(spt_cfg)
        structured = dict(STRUCTURED_DEFAULTS, **(spt_cfg.get('structured') or {}))
        if structured['type'] not in STRUCTURED_TYPES:
            raise ValueError(f'spt_cfg.structured.type must be one of {STRUCTURED_TYPES}.')
        self.plain_keys = set(self.state_dict())
        units = vit_units(self)
        alloc = load_allocation(spt_cfg['allocation'])
        check_allocation(alloc, units, spt_cfg['allocation'])
        apply_allocation(self, units, alloc, structured)
        self.allocation_key = alloc['key']
        self.allocation_summary = {k: alloc[k] for k in (
            'budget', 'tau', 'rule', 'structured_type', 'rank', 'cost', 'structured',
            'full_vectors') if k in alloc}
        self.allocation_summary['sparse'] = {k: int(v.numel())
                                             for k, v in alloc['sparse'].items()}
        self._freeze_spt()

    def _freeze_spt(self) -> None:
        for name, p in self.named_parameters():
            p.requires_grad = '.pyra_' in name
        for m in self.modules():
            if isinstance(m, (SparseDelta, LoRA, Adapter)):
                for p in m.parameters():
                    p.requires_grad = True

    def spt_parameters(self) -> Dict[str, nn.Parameter]:
        """The SPT-trainable parameters (sparse values, LoRA, Adapter), by name."""
        names = set()
        for mname, m in self.named_modules():
            if isinstance(m, (SparseDelta, LoRA, Adapter)):
                names |= {f'{mname}.{n}' for n, _ in m.named_parameters()}
        return {n: p for n, p in self.named_parameters() if n in names}

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_vit_checkpoint(_PlainView(self), cfg['checkpoint'], prefix=cfg.get('prefix'),
                                strict=cfg.get('strict', True))
            self._is_init = True
            return
        super().init_weights()

    # --------------------------------------------------------------- deployment
    def spt_layers(self) -> Dict[str, nn.Module]:
        return {n: m for n, m in self.named_modules() if isinstance(m, SPT_LAYERS)}

    def merge_spt(self) -> int:
        """Fold sparse deltas and LoRA into the frozen weights in place."""
        layers = self.spt_layers()
        self._check_foldable(layers)
        for layer in layers.values():
            merge_layer(layer)
        return len(layers)

    @staticmethod
    def _check_foldable(layers) -> None:
        adapters = [n for n, m in layers.items() if not m.foldable]
        if adapters:
            raise ValueError(f'SPT-Adapter modules ({adapters[:3]}...) are non-linear and '
                             'cannot be folded into the weights; deploy the SPTViT '
                             'checkpoint as is.')

    @torch.no_grad()
    def folded_state_dict(self) -> Dict[str, Tensor]:
        """State dict of the plain PYRAViT (same arguments, no lora_cfg) with every SPT
        update folded in."""
        layers = self.spt_layers()
        self._check_foldable(layers)
        state = {k: v.detach().clone() for k, v in self.state_dict().items()
                 if k in self.plain_keys}
        for name, layer in layers.items():
            if layer.merged:
                continue
            for leaf, d in layer.delta().items():
                state[f'{name}.{leaf}'] += d.to(state[f'{name}.{leaf}'].dtype)
        return state
