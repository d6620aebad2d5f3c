"""The registry of the parts a ViT :class:`~projects.vit.block.Block` is built
from (attention, MLP, token-reduction step, token gate, parallel adapter).

It is MMAdapt's own registry, not mmpretrain's or mmseg's ``MODELS``: block parts are
built by the block with its dimensions as default arguments, never as whole models, and
names such as ``Attention`` or ``Mlp`` would collide with theirs.
"""
from typing import Optional, Union

from mmengine.registry import Registry
from torch import nn

VIT_LAYERS = Registry('vit layer', scope='mmadapt', locations=['projects'])

LayerCfg = Union[None, dict, nn.Module]


def build_layer(cfg: LayerCfg, **default_args) -> Optional[nn.Module]:
    """Build ``cfg`` from :data:`VIT_LAYERS` with the block's dimensions as defaults;
    a module is used as it is and None stays None (the slot is empty)."""
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'a ViT layer config must be a dict with a `type` (one of '
                        f'{sorted(VIT_LAYERS.module_dict)}), or a module; got {cfg!r}.')
    # looked up directly: Registry.build would consult mmengine's global default scope
    # (mmpretrain / mmseg), which has no child for this registry, and warn on every part
    args = {**default_args, **cfg}
    kind = args.pop('type')
    cls = VIT_LAYERS.get(kind) if isinstance(kind, str) else kind
    if cls is None:
        raise KeyError(f'{kind!r} is not a ViT layer; registered: '
                       f'{sorted(VIT_LAYERS.module_dict)}. Register it with '
                       '@VIT_LAYERS.register_module() in a module that `projects` imports.')
    return cls(**args)
