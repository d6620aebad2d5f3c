"""Fold a trained SPT-LoRA checkpoint into the plain model for deployment.

Reads a training checkpoint of an SPT config, folds every LoRA and sparse / vector
update of the SPTViT backbone into its frozen tensors and writes a checkpoint of the
same model with a plain ``PYRAViT`` backbone (heads, PYRA weights and merging kept)::

    python -m projects.spt.export CONFIG CHECKPOINT OUT [--cfg-options ...]

Load it with the config and ``plain_config(cfg)`` (backbone type PYRAViT, no spt_cfg).
SPT-Adapter checkpoints cannot be folded (the adapters are non-linear).
"""
import argparse
import copy
import os.path as osp
from typing import Dict

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import load_checkpoint
from torch import Tensor


def plain_config(cfg: Config) -> Config:
    """The same config with the SPTViT backbone replaced by the plain PYRAViT."""
    out = copy.deepcopy(cfg)
    backbone = out.model.backbone
    backbone.pop('spt_cfg', None)
    scope, _, _ = str(backbone.type).rpartition('.')
    backbone.type = f'{scope}.PYRAViT' if scope else 'PYRAViT'
    backbone.lora_cfg = None
    backbone.frozen = False
    out.pop('runner_type', None)
    return out


def fold_model_state(model) -> Dict[str, Tensor]:
    """Full state dict of a model whose ``backbone`` is an SPTViT, with the backbone
    part folded into the plain PYRAViT key set."""
    folded = {f'backbone.{k}': v for k, v in model.backbone.folded_state_dict().items()}
    rest = {k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.startswith('backbone.')}
    return {**rest, **folded}


def fold_spt_checkpoint(cfg: Config, checkpoint: str, out: str) -> int:
    from projects.core.model_builder import build_model_from_cfg
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.pop('init_cfg', None)
    model = build_model_from_cfg(cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    state = fold_model_state(model)
    torch.save({'state_dict': state,
                'meta': dict(folded_from=osp.abspath(checkpoint),
                             note='load into plain_config(cfg): backbone type PYRAViT')}, out)
    return len(state)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Fold an SPT-LoRA checkpoint.')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    import projects  # noqa: F401
    import projects.spt  # noqa: F401
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    n = fold_spt_checkpoint(cfg, args.checkpoint, args.out)
    print(f'wrote {n} tensors to {args.out}; load it with backbone type PYRAViT')


if __name__ == '__main__':
    main()
