"""Build a model from an mmpretrain or mmseg config with the right registry scope."""
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from torch import nn


def build_model_from_cfg(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in the config's ``default_scope``; SyncBN becomes BN so the
    model runs in a single CPU process (tools that benchmark or convert)."""
    scope = cfg.get('default_scope', None)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    elif scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        raise ValueError(f'config default_scope is {scope!r}; MMAdapt models are built in '
                         "'mmpretrain' or 'mmseg' scope.")
    init_default_scope(scope)
    return revert_sync_batchnorm(MODELS.build(cfg.model))
