"""Measure DyT's inference savings side by side in one run: the plain ViT of a DyT
config, the DyT model with its dispatchers set to an activation rate (or loaded from a
trained checkpoint), and optionally DyT + ToMe. Prints images/s, the GFLOPs of what
really ran (MLPs on the active tokens only, adapters and dispatchers included) and how
much of the FLOPs ratio the measured speed-up realises.

The batch is real images of the config's test split by default (--images): the rate a
dispatcher is set to is a share of the decisions on this batch, and noise or one
repeated image would make every image's active-token count the same.

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
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.core.analysis.benchmark import measure_interleaved  # noqa: E402
from projects.core.analysis.loading import (add_image_arg, build_model, image_hw,  # noqa: E402
                                            input_images, load_config, load_weights)
from projects.core.analysis.macs import executed_macs  # noqa: E402
from projects.core.analysis.protocol import check_amp, dtype_name, under_amp  # noqa: E402
from projects.core.analysis.report import (make_report, print_table, ratio,  # noqa: E402
                                           write_report)
from projects.dyt.calibrate import calibrate_rate  # noqa: E402


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config', help='a DyT config')
    p.add_argument('--rate', type=float, nargs='+', default=[0.5],
                   help='activation rate(s) the dispatchers are set to on the batch; '
                   'several rates time one MLP-dispatch model per rate (where packing '
                   'starts to pay: rate 1 is its pure overhead)')
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
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    add_image_arg(p)
    p.add_argument('--amp', choices=['bf16', 'fp16'], default=None,
                   help='time under autocast (bf16 on CPU)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config')
    p.add_argument('--json', help='also write the results here (schema mmadapt-analysis)')
    args = p.parse_args(argv)
    if args.checkpoint and len(args.rate) > 1:
        p.error('--checkpoint keeps the trained dispatchers: give at most one --rate.')
    if not all(0 < r <= 1 for r in args.rate):
        p.error(f'--rate: every rate must be in (0, 1], got {args.rate}.')
    try:
        check_amp(args.amp, 'cpu')
    except ValueError as err:
        p.error(str(err))
    return args


# block_cfg updates that turn an MLP-dispatch config into each variant
DISPATCH = {
    'mlp': {},
    'attn': dict(mlp_gate=None, attn_gate=dict(type='DyTDispatcher', skips='attn')),
    'attn-mlp': dict(mlp_gate=None, attn_gate=dict(type='DyTDispatcher', skips='attn_mlp')),
    'layer': dict(mlp_gate=None, attn_gate=dict(type='DyTLayerDispatcher')),
}


def _build(cfg: Config, **backbone):
    cfg = Config(cfg.to_dict())  # a copy
    cfg.model.backbone.update(backbone)
    return build_model(cfg, scopes=('mmpretrain',))  # random weights


def main(argv: List[str] = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    hw = image_hw(cfg.model.backbone.get('img_size', 224))
    models = {'plain ViT': _build(cfg, block_cfg=None, aux_losses=[], lora_cfg=None)}
    x = input_images(cfg, models['plain ViT'], args.batch_size, hw, args.images)
    variants = {}  # name -> (backbone override, activation rate)
    for kind in args.dispatch:
        block_cfg = dict(cfg.model.backbone.block_cfg, **DISPATCH[kind])
        for rate in (args.rate if kind == 'mlp' else args.rate[:1]):
            variants[f'DyT {kind} r={rate}'] = ({} if kind == 'mlp' else dict(
                block_cfg=block_cfg), rate)
    if args.tome:
        tome = int(args.tome) if args.tome.isdigit() else args.tome
        # merging is PYRAViT's: the same ViT and parts, with a TokenMerger per layer
        variants[f'DyT mlp r={args.rate[0]} + ToMe {args.tome}'] = (
            dict(type='PYRAViT', merge_mode='tome', merge_schedule=tome), args.rate[0])
    for name, (override, rate) in variants.items():
        model = _build(cfg, **override)
        if args.checkpoint:
            load_weights(model, args.checkpoint, strict=False)
            name = name.replace(f'r={rate}', 'trained')
        else:
            calibrate_rate(model.backbone, x, rate)
        models[name] = model
    macs = {n: executed_macs(m.backbone, x) for n, m in models.items()}
    for name in models:
        print(f'built {name}: {macs[name] / 1e9:.2f} GFLOPs/img executed', flush=True)
    fns = {n: under_amp(m.backbone, args.amp) for n, m in models.items()}
    stats = measure_interleaved(fns, x, args.warmup, args.repeats)
    base = 'plain ViT'
    rows = []
    for name in models:
        speed = stats[name]['images_per_s'] / stats[base]['images_per_s']
        flops_ratio = macs[base] / macs[name]
        rows.append(dict(model=name, macs=macs[name], gflops=macs[name] / 1e9,
                         flops_ratio=flops_ratio, images_per_s=stats[name]['images_per_s'],
                         speed_up=speed, realised=speed / flops_ratio))
    print(f'\nbatch {args.batch_size}, backbone, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} interleaved repeats after {args.warmup} warm-up, '
          f'{args.images} images, {dtype_name(args.amp)}')
    print_table(rows, [('model', 'model', 's'), ('images_per_s', 'img/s', '.2f'),
                       ('speed_up', 'speed-up', ratio()), ('gflops', 'GFLOPs', '.2f'),
                       ('flops_ratio', 'FLOPs ratio', ratio()),
                       ('realised', 'speed/FLOPs', '.2f')])
    report = make_report('dyt_benchmark', rows, config=args.config, batch=args.batch_size,
                         dtype=dtype_name(args.amp), images=args.images,
                         rate=args.rate[0] if len(args.rate) == 1 else args.rate,
                         checkpoint=args.checkpoint, warmup=args.warmup, repeats=args.repeats)
    write_report(report, args.json)
    return report


if __name__ == '__main__':
    main()
