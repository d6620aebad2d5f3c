"""Per-layer block configurations of a ViT backbone.

``block_cfg`` gives the :class:`~projects.vit.block.Block` arguments of every
layer: one dict for all layers, a list with one dict per layer, or (from Python) a
callable ``layer_index -> dict``. ``block_overrides`` then applies rules in order, each
``dict(layers=[0, 1, 2] or '0:3', **block_args)`` -- the config-file form of "layers
0-2 use X". Part configs (``attn_cfg``, ``mlp_cfg``, ...) of the same ``type`` (or with
no ``type``) update the part config below them; a different ``type`` replaces it.
"""
import inspect
from typing import Callable, Dict, List, Sequence, Union

from .block import Block

BlockCfgSpec = Union[None, dict, Sequence[dict], Callable[[int], dict]]
PART_KEYS = ('attn_cfg', 'mlp_cfg', 'merger', 'mlp_gate', 'adapter', 'attn_gate')
BLOCK_ARGS = tuple(inspect.signature(Block.__init__).parameters)[1:]


def _layers_of(rule: dict, num_layers: int) -> List[int]:
    spec = rule.get('layers')
    if isinstance(spec, str) and spec.count(':') == 1:
        lo, hi = spec.split(':')
        layers = list(range(num_layers))[slice(int(lo) if lo else None, int(hi) if hi else None)]
    elif isinstance(spec, (list, tuple)) and all(isinstance(i, int) for i in spec):
        layers = [i + num_layers if i < 0 else i for i in spec]
    else:
        raise ValueError(f"block_overrides: each rule needs `layers`, a list of layer "
                         f"indices or a 'start:end' string; got {spec!r} in {rule}.")
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad or not layers:
        raise ValueError(f'block_overrides: layers {spec!r} select no layer or layers '
                         f'outside 0..{num_layers - 1}.')
    return layers


def _check_keys(cfg: dict, where: str) -> None:
    unknown = sorted(set(cfg) - set(BLOCK_ARGS))
    if unknown:
        raise ValueError(f'{where}: {unknown} are not Block arguments; known: '
                         f'{list(BLOCK_ARGS)}.')


def merge_block_cfg(base: dict, update: dict) -> dict:
    """``base`` updated by ``update``; part configs merge per the module rule."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if key in PART_KEYS and isinstance(old, dict) and isinstance(value, dict) \
                and value.get('type', old.get('type')) == old.get('type'):
            out[key] = {**old, **value}
        else:
            out[key] = value
    return out


def layer_cfgs(block_cfg: BlockCfgSpec, num_layers: int) -> List[dict]:
    """``block_cfg`` (None, one dict, a list or a callable) as one dict per layer."""
    if block_cfg is None:
        return [{} for _ in range(num_layers)]
    if isinstance(block_cfg, dict):
        return [block_cfg] * num_layers
    if callable(block_cfg):
        return [block_cfg(i) or {} for i in range(num_layers)]
    per_layer = list(block_cfg)
    if len(per_layer) != num_layers:
        raise ValueError(f'block_cfg lists {len(per_layer)} layers for a '
                         f'{num_layers}-layer model; give one dict per layer, one dict '
                         'for all, or use block_overrides.')
    return per_layer


def resolve_block_cfgs(defaults: Sequence[dict], block_cfg: BlockCfgSpec = None,
                       block_overrides: Sequence[dict] = ()) -> List[Dict]:
    """Block arguments of each layer: ``defaults[i]`` (the backbone's own choices),
    then ``block_cfg``, then each override rule."""
    num_layers = len(defaults)
    cfgs = []
    for i, (base, layer) in enumerate(zip(defaults, layer_cfgs(block_cfg, num_layers))):
        _check_keys(layer, f'block_cfg of layer {i}')
        cfgs.append(merge_block_cfg(base, layer))
    for rule in block_overrides:
        update = {k: v for k, v in rule.items() if k != 'layers'}
        _check_keys(update, f'block_overrides rule {rule}')
        for i in _layers_of(rule, num_layers):
            cfgs[i] = merge_block_cfg(cfgs[i], update)
    return cfgs
