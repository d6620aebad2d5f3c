"""Build a model from an mmpretrain or mmseg config with the right registry scope."""
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from torch import nn


def build_model_from_cfg(cfg: Config) -> nn.Module:
    scope = cfg.get('default_scope', None)
    if scope is None:
        raise ValueError('config has no default_scope (mmpretrain or mmseg); set one.')
    if DefaultScope.get_current_instance() is None or \
            DefaultScope.get_current_instance().scope_name != scope:
        init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    elif scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        raise ValueError(f'unsupported default_scope {scope!r}: use mmpretrain or mmseg.')
    model = MODELS.build(cfg.model)
    from mmengine.model import revert_sync_batchnorm
    return revert_sync_batchnorm(model)
