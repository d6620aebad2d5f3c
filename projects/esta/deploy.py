"""One-stage deployment: export stitches of a trained ESTA supernet as standalone
models (a config and a checkpoint each) that ``tools/test.py`` runs.

The exported backbone is a plain :class:`~projects.esta.backbone.StitchedViT`
(``pst=False``, anchors without LoRA or checkpoints) fixed to one stitch, with the
shared LoRA and that stitch's biases folded into the weights (the one merge of
``projects.core.peft``); the classifier becomes
mmpretrain's ``ImageClassifier`` (segmentors keep their type) and the ESTA training
hooks are dropped. With a head per anchor the exported classifier has the head of
the anchor the stitch ends in (its config's ``in_channels`` and its weights).
"""
import copy
import json
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config
from torch import Tensor, nn

from ..core.checkpoint.adapter_only import load_model_weights
from ..core.engine.atomic_io import atomic_torch_save, atomic_write_text
from ..core.engine.model_builder import build_model_from_cfg
from ..core.peft.deploy import folded_model_state as fold_with_backbone_state
from .hooks import DEPLOY_FILE

TRAINING_ONLY_HOOKS = ('ESTASamplingHook', 'StitchInitHook', 'LinearProbeInitHook',
                       'AnchorHeadsProbeHook')


def deploy_config(cfg: Config, backbone: nn.Module, stitch: int) -> Config:
    out = copy.deepcopy(cfg)
    out.model.backbone = backbone.plain_backbone_cfg(out.model.backbone.to_dict(), stitch)
    if out.model.get('type') == 'StitchedImageClassifier':
        out.model.type = 'ImageClassifier'
        out.model.pop('distill', None)
        out.model.pop('distill_weight', None)
        if out.model.pop('head_per_anchor', False):
            out.model.head.in_channels = backbone.dims[backbone.end_anchor(stitch)]
    out.pop('runner_type', None)
    out.pop('load_from', None)
    out.custom_hooks = [h for h in out.get('custom_hooks', [])
                        if h.get('type') not in TRAINING_ONLY_HOOKS]
    return out


def folded_model_state(model: nn.Module, stitch: int) -> Dict[str, Tensor]:
    """The model's state with the backbone folded for ``stitch`` (LoRA merged with
    ``projects.core.peft``, that stitch's bias rows added) and, with a head per anchor,
    the end anchor's head as ``head``."""
    state = fold_with_backbone_state(model, model.backbone.folded_state_dict(stitch))
    if not getattr(model, 'head_per_anchor', False):
        return state
    end = model.backbone.end_anchor(stitch)
    prefix = f'anchor_heads.{end}.'
    out = {k: v for k, v in state.items()
           if not k.startswith('anchor_heads.') and
           not (end < len(model.anchor_heads) and k.startswith('head.'))}
    if end < len(model.anchor_heads):
        out.update({'head.' + k[len(prefix):]: v for k, v in state.items()
                    if k.startswith(prefix)})
    return out


def deployed_stitches(work_dir: str) -> List[int]:
    path = osp.join(work_dir, DEPLOY_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} does not exist: it is written by ESTASamplingHook '
                                'when training ends. Train the ESTA config first, or pass '
                                'the stitch ids explicitly (--stitches).')
    with open(path) as f:
        return [d['stitch'] for d in json.load(f)['deploy']]


def export_stitches(cfg: Config, checkpoint: Optional[str], stitches: List[int],
                    out_dir: str, model: Optional[nn.Module] = None) -> List[str]:
    """Write ``stitch_<id>.py`` / ``stitch_<id>.pth`` for each id; returns the config
    paths. ``model``: an already loaded supernet (then ``checkpoint`` is not read)."""
    if model is None:
        # a full checkpoint holds every weight; an adapter-only one is completed from
        # the anchors' init_cfg checkpoints (checked against its recorded base)
        model = build_model_from_cfg(cfg)
        load_model_weights(model, checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for stitch in stitches:
        model.backbone.space.check_id(int(stitch))
        plain = deploy_config(cfg, model.backbone, int(stitch))
        stem = osp.join(out_dir, f'stitch_{int(stitch)}')
        state = folded_model_state(model, int(stitch))
        atomic_torch_save({'state_dict': state,
                           'meta': dict(stitch=int(stitch), config=stem + '.py',
                                        folded_from=checkpoint and osp.abspath(checkpoint))},
                          stem + '.pth')
        atomic_write_text(stem + '.py', plain.pretty_text)
        paths.append(stem + '.py')
    return paths
