"""Build a model from an mmpretrain or mmseg config with the right registry scope."""
import copy
from typing import Sequence

from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from torch import nn

#: the libraries MMAdapt models are built in, and what their configs are for
SCOPE_TASKS = {'mmpretrain': 'classification', 'mmseg': 'segmentation'}


def check_scope(cfg: Config, scopes: Sequence[str] = tuple(SCOPE_TASKS)) -> str:
    """The config's ``default_scope`` if it is one of ``scopes``; else an error naming
    the config file, its library and the kind of config the tool needs."""
    scope = cfg.get('default_scope', None)
    if scope in scopes:
        return scope
    wanted = ' or '.join(f'{s} ({SCOPE_TASKS.get(s, s)})' for s in scopes)
    what = (f'an {scope} ({SCOPE_TASKS[scope]}) config' if scope in SCOPE_TASKS else
            f'a config with default_scope={scope!r}')
    raise ValueError(f'{cfg.filename or "the config"} is {what}, but this tool builds '
                     f'{wanted} models. Give it a config of that library (e.g. one under '
                     "configs/, which set default_scope), or set default_scope in yours.")


def build_model_from_cfg(cfg: Config,
                         scopes: Sequence[str] = tuple(SCOPE_TASKS)) -> nn.Module:
    """Build ``cfg.model`` in the config's ``default_scope`` (one of ``scopes``: a tool
    for one library passes only that one); SyncBN becomes BN so the model runs in a
    single CPU process (tools that benchmark or convert). A top-level
    ``data_preprocessor`` (mmpretrain configs keep mean/std and BGR->RGB there) goes
    into the model as mmengine's Runner puts it, so a tool normalises like training."""
    scope = check_scope(cfg, scopes)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    init_default_scope(scope)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None and isinstance(model_cfg, dict):
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return revert_sync_batchnorm(MODELS.build(model_cfg))
