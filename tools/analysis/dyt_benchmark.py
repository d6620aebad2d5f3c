"""Measure DyT's inference savings side by side in one run: the plain ViT of a DyT
config, the DyT model with its dispatchers set to an activation rate (or loaded from a
trained checkpoint), and optionally DyT + ToMe. Prints images/s, the GFLOPs of what
really ran (MLPs on the active tokens only, adapters and dispatchers included) and how
much of the FLOPs ratio the measured speed-up realises.

Example (the DyT target: ViT-B/16, 224 px, batch 32, r = 0.5):
    python tools/analysis/dyt_benchmark.py \\
        configs/dyt/vtab1k/dyt-mlp-r0.5_vit-b16_1xb64-100e_vtab1k-cifar-224px.py \\
        --rate 0.5 --batch-size 32 --tome low --dispatch mlp attn attn-mlp layer
"""
import argparse
import os.path as osp
import sys
from typing import List

import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.core.analysis.benchmark import measure_interleaved  # noqa: E402
from projects.core.engine.model_builder import build_model_from_cfg  # noqa: E402
from projects.dyt.calibrate import calibrate_rate  # noqa: E402
from projects.pyra.flops import executed_macs  # noqa: E402


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config', help='a DyT config')
    p.add_argument('--rate', type=float, default=0.5,
                   help='activation rate the dispatchers are set to on the batch')
    p.add_argument('--checkpoint', help='trained DyT checkpoint: keep its dispatchers '
                   '(--rate is then ignored)')
    p.add_argument('--dispatch', nargs='+', default=['mlp'], choices=list(DISPATCH),
                   help='dispatch variants to time (default: the config\'s own, mlp); '
                   'each replaces the config\'s dispatcher, adapter kept')
    p.add_argument('--tome', help="also time DyT + ToMe with this merge schedule ('low', "
                   "'high', an int r)")
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    return p.parse_args(argv)


# block_cfg updates that turn an MLP-dispatch config into each variant
DISPATCH = {
    'mlp': {},
    'attn': dict(mlp_gate=None, attn_gate=dict(type='DyTDispatcher', skips='attn')),
    'attn-mlp': dict(mlp_gate=None, attn_gate=dict(type='DyTDispatcher', skips='attn_mlp')),
    'layer': dict(mlp_gate=None, attn_gate=dict(type='DyTLayerDispatcher')),
}


def _build(cfg: Config, **backbone):
    cfg = Config(cfg.to_dict())  # a copy
    cfg.model.backbone.pop('init_cfg', None)  # speed does not depend on weights
    cfg.model.backbone.update(backbone)
    return build_model_from_cfg(cfg, scopes=('mmpretrain',)).eval()


def main(argv: List[str] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    hw = cfg.model.backbone.get('img_size', 224)
    hw = (hw, hw) if isinstance(hw, int) else tuple(hw)
    x = torch.randn(args.batch_size, 3, *hw)
    models = {'plain ViT': _build(cfg, block_cfg=None, aux_losses=[], lora_cfg=None)}
    variants = {}
    for kind in args.dispatch:
        block_cfg = dict(cfg.model.backbone.block_cfg, **DISPATCH[kind])
        variants[f'DyT {kind} r={args.rate}'] = {} if kind == 'mlp' else dict(
            block_cfg=block_cfg)
    if args.tome:
        tome = int(args.tome) if args.tome.isdigit() else args.tome
        # merging is PYRAViT's: the same ViT and parts, with a TokenMerger per layer
        variants[f'DyT mlp r={args.rate} + ToMe {args.tome}'] = dict(
            type='PYRAViT', merge_mode='tome', merge_schedule=tome)
    for name, override in variants.items():
        model = _build(cfg, **override)
        if args.checkpoint:
            load_checkpoint(model, args.checkpoint, map_location='cpu')
            name = name.replace(f'r={args.rate}', 'trained')
        else:
            calibrate_rate(model.backbone, x, args.rate)
        models[name] = model
    flops = {n: executed_macs(m.backbone, x) / 1e9 for n, m in models.items()}
    for name, model in models.items():
        print(f'built {name}: {flops[name]:.2f} GFLOPs/img executed', flush=True)
    fns = {n: m.backbone for n, m in models.items()}
    stats = measure_interleaved(fns, x, args.warmup, args.repeats)
    base = 'plain ViT'
    print(f'\nbatch {args.batch_size}, backbone, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} interleaved repeats after {args.warmup} warm-up')
    print(f'{"model":<34} {"img/s":>8} {"speed-up":>9} {"GFLOPs":>8} {"FLOPs ratio":>12} '
          f'{"speed/FLOPs":>12}')
    for name in models:
        speed = stats[name]['images_per_s'] / stats[base]['images_per_s']
        ratio = flops[base] / flops[name]
        print(f'{name:<34} {stats[name]["images_per_s"]:>8.2f} {speed:>8.2f}x '
              f'{flops[name]:>8.2f} {ratio:>11.2f}x {speed / ratio:>11.2f}')


if __name__ == '__main__':
    main()
