"""Search run -> compact model: the architecture, a strictly loading compact backbone
checkpoint and a config inheriting the fine-tune base (used by
``tools/model_converters/spvit_export.py`` and the embedded run).

A search config names its fine-tune base and pretrained weights with two top-level
keys: ``spvit_finetune_base`` (a config path, relative to the search config) and,
optionally, ``spvit_pretrained`` (default: the backbone's ``init_cfg.checkpoint``).
"""
import os
import os.path as osp
from typing import Dict, Optional

from mmengine.config import Config

from ..core.engine.atomic_io import atomic_torch_save, atomic_write_text
from .arch import DEFAULT_SKIP_OP, SPViTArch, compact_overrides, load_arch
from .convert import arch_from_state, compact_state_dict, fold_state_dict, read_backbone_state
from .supernet import check_skip_op


def _backbone_cfg(cfg: Config) -> dict:
    model = cfg.model
    return model.get('backbone', model)


def search_skip_op(cfg: Config) -> str:
    """The skip op of the search config's SPViTAttention (its default when not set)."""
    block = _backbone_cfg(cfg).get('block_cfg') or {}
    return (block.get('attn_cfg') or {}).get('skip_op', DEFAULT_SKIP_OP)


def export_compact(search_cfg: Config, out_dir: str, checkpoint: Optional[str] = None,
                   arch: Optional[str] = None, finetune_base: Optional[str] = None,
                   pretrained: Optional[str] = None, supernet: bool = False,
                   skip_op: Optional[str] = None, fold: bool = False) -> Dict[str, str]:
    """Write ``spvit_arch.json``, ``spvit_compact.pth`` and ``spvit_compact.py`` into
    ``out_dir``; returns their paths. ``skip_op=None`` takes the search's skip op, so
    the compact model is the network the search scored."""
    skip_op = search_skip_op(search_cfg) if skip_op is None else skip_op
    check_skip_op(skip_op, 'export')
    if checkpoint is None and arch is None:
        raise ValueError('export: give the search checkpoint or an architecture JSON (--arch).')
    if supernet and checkpoint is None:
        raise ValueError('export: supernet weights need the search checkpoint.')
    backbone = _backbone_cfg(search_cfg)
    spec = backbone.get('arch')
    num_heads = _num_heads(spec)
    base = finetune_base or search_cfg.get('spvit_finetune_base')
    if base is None:
        raise ValueError('export: the search config names no spvit_finetune_base; pass '
                         '--finetune-base CONFIG.')
    if not osp.isabs(base) and search_cfg.filename and not osp.isfile(base):
        base = osp.join(osp.dirname(search_cfg.filename), base)
    if not osp.isfile(base):
        raise FileNotFoundError(f'export: fine-tune base config {base} does not exist.')
    state = read_backbone_state(checkpoint) if checkpoint else None
    if arch is not None:
        found = load_arch(arch)
    else:
        found = arch_from_state(state, num_heads, source=checkpoint)
    if supernet:
        source = state
    else:
        pretrained = pretrained or search_cfg.get('spvit_pretrained') or \
            (backbone.get('init_cfg') or {}).get('checkpoint')
        if pretrained is None:
            raise ValueError('export: no pretrained checkpoint to gather from; pass '
                             '--pretrained or --from-supernet.')
        source = read_backbone_state(pretrained)
    hidden = source['blocks.0.mlp.fc1.weight'].shape[0]
    num_layers = len({k.split('.')[1] for k in source if k.startswith('blocks.')})
    found.validate(num_layers=num_layers, mlp_hidden=hidden,
                   embed_dims=source['blocks.0.attn.proj.weight'].shape[0])
    compact = compact_state_dict(found, source, num_heads, supernet=supernet)
    alpha = _alpha(backbone)
    if fold:
        compact = fold_state_dict(found, compact, num_heads, alpha)
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: osp.join(out_dir, f'spvit_{n}') for k, n in
             (('arch', 'arch.json'), ('checkpoint', 'compact.pth'), ('config', 'compact.py'))}
    if not found.embed_dims:
        found.embed_dims = source['blocks.0.attn.proj.weight'].shape[0]
        found.num_heads, found.mlp_hidden = num_heads, hidden
    found.save(paths['arch'])
    atomic_torch_save({'state_dict': compact}, paths['checkpoint'])
    atomic_write_text(paths['config'], compact_config_text(
        found, osp.abspath(base), osp.abspath(paths['checkpoint']), skip_op, fold, alpha))
    return paths


def _num_heads(spec) -> int:
    from ..vit.backbone import arch_spec
    return arch_spec(spec)['num_heads']


def _alpha(backbone: dict) -> float:
    attn = (backbone.get('block_cfg') or {}).get('attn_cfg') or {}
    return float(attn.get('alpha', 1e-2))


def compact_config_text(arch: SPViTArch, base: str, checkpoint: str, skip_op: str,
                        folded: bool, alpha: float) -> str:
    """A config inheriting ``base`` whose backbone is the compact model of ``arch``."""
    overrides = compact_overrides(arch, skip_op=skip_op, folded=folded, alpha=alpha)
    rules = ',\n'.join(f'        {rule!r}' for rule in overrides)
    return (f'# SPViT compact model written by spvit_export: ops {arch.ops}\n'
            f'_base_ = [{base!r}]\n'
            'model = dict(backbone=dict(\n'
            '    block_cfg=None,\n'
            f'    block_overrides=[\n{rules}],\n'
            '    aux_losses=[],\n'
            f'    init_cfg=dict(type=\'Pretrained\', checkpoint={checkpoint!r}, strict=True)))\n')
