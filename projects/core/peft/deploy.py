"""Fold the parameter-efficient updates of a trained model into its weights.

One path for every method: the backbone's ``folded_state_dict()`` returns the plain
backbone's state with the updates added in -- every backbone builds it with
:func:`~projects.core.peft.fold.merged_state_dict` (LoRA of ComposableViT / PYRAViT;
SPT-LoRA and sparse deltas of SPTViT / SPTSwin; ESTA adds its per-stitch biases) --
and its ``plain_backbone_cfg(cfg)`` the config of that plain backbone. The result runs
at the speed of the plain model with the same outputs. The trained checkpoint may be
full or adapter-only (then its base is the config's init_cfg checkpoint, checked).
"""
import copy
import os.path as osp
from typing import Dict, Optional, Tuple

from mmengine.config import Config
from torch import Tensor, nn

from ..checkpoint.adapter_only import load_model_weights
from ..engine.atomic_io import atomic_torch_save, atomic_write_text
from ..engine.model_builder import build_model_from_cfg
from .foldable import NothingToFoldError

#: hooks that only make sense for the trainable (unfolded) model
TRAINING_ONLY_HOOKS = ('SPTAllocationHook',)


def _check_foldable(backbone: nn.Module) -> None:
    if not (hasattr(backbone, 'folded_state_dict') and hasattr(backbone, 'plain_backbone_cfg')):
        raise NothingToFoldError(f'{type(backbone).__name__} has nothing to fold (MMAdapt '
                                 'backbones with LoRA or SPT provide folded_state_dict).')


def deploy_config(cfg: Config, backbone: nn.Module) -> Config:
    """``cfg`` with the plain backbone and without training-only hooks and runner."""
    _check_foldable(backbone)
    out = copy.deepcopy(cfg)
    out.model.backbone = backbone.plain_backbone_cfg(out.model.backbone.to_dict())
    out.model.backbone.pop('init_cfg', None)  # the folded checkpoint holds the weights
    out.pop('runner_type', None)
    hooks = [h for h in out.get('custom_hooks', []) if h.get('type') not in TRAINING_ONLY_HOOKS]
    out.custom_hooks = hooks
    return out


def folded_model_state(model: nn.Module,
                       backbone_state: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
    """Full state dict with the backbone part folded (heads, necks kept);
    ``backbone_state``: an already folded backbone state (ESTA: one stitch's)."""
    if backbone_state is None:
        _check_foldable(model.backbone)
        backbone_state = model.backbone.folded_state_dict()
    folded = {f'backbone.{k}': v for k, v in backbone_state.items()}
    rest = {k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.startswith('backbone.')}
    return {**rest, **folded}


def fold_checkpoint(cfg: Config, checkpoint: str, out: str) -> Tuple[int, Config]:
    """Write the folded checkpoint ``out`` and its config ``<out without .pth>.py``;
    returns (number of tensors, deploy config)."""
    model = build_model_from_cfg(cfg)
    load_model_weights(model, checkpoint)
    try:
        state = folded_model_state(model)
    except NothingToFoldError as err:
        raise NothingToFoldError(
            f'{cfg.filename}: {err} So {checkpoint} already is a plain model: test or '
            f'deploy it as it is (python tools/test.py {cfg.filename} {checkpoint}); to '
            'fold, give the LoRA / SPT-LoRA config it was trained with.') from err
    plain = deploy_config(cfg, model.backbone)
    cfg_path = osp.splitext(out)[0] + '.py'
    atomic_torch_save({'state_dict': state,
                       'meta': dict(folded_from=osp.abspath(checkpoint), config=cfg_path)},
                      out)
    atomic_write_text(cfg_path, plain.pretty_text)  # what Config.dump writes for .py
    return len(state), plain
