"""Compare the inference speed of two (or more) configs side by side in one run.

Builds each config's model (random weights unless --load-weights: speed does not depend
on them), feeds the same random batch, and prints images/s (median of --repeats after
--warmup), analytic GFLOPs with the token counts merging really leaves, and the ratios
against the first config.

Example (the PYRA target: ViT-B/16, 224 px, batch 32, fp32):
    python tools/analysis/benchmark.py \
        configs/pyra/vtab1k/lora_vit-b16_1xb32-100e_vtab1k-cifar-224px.py \
        configs/pyra/vtab1k/pyra-lora-low_vit-b16_1xb32-100e_vtab1k-cifar-224px.py \
        --batch-size 32 --part backbone

With --drop-baseline every merging config also gets a row that drops the same number of
tokens per layer without matching (merge_mode='drop'): the physical limit of merging.
The "of limit" column is a merging model's speed over its own limit's.
"""
import argparse
import os.path as osp
import sys
from typing import List, NamedTuple, Optional

import torch
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.core.benchmark import measure_interleaved  # noqa: E402
from projects.core.model_builder import build_model_from_cfg  # noqa: E402
from projects.pyra.backbone import PYRAViT  # noqa: E402
from projects.pyra.flops import vit_macs  # noqa: E402


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('configs', nargs='+', help='config files; the first is the baseline')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--img-size', type=int, nargs='+', default=None,
                   help='H [W]; default: the backbone img_size')
    p.add_argument('--part', choices=['backbone', 'model'], default='backbone',
                   help="time the backbone alone or the whole model's tensor forward")
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    p.add_argument('--fold-lora', action='store_true',
                   help='fold LoRA into the weights before timing (deployment)')
    p.add_argument('--plain-baseline', action='store_true',
                   help='add a first row: the first config without merging and without '
                        'LoRA (the plain ViT); ratios are then against it')
    p.add_argument('--drop-baseline', action='store_true',
                   help="add, after each merging config, the same schedule with "
                        "merge_mode='drop' (no matching: the limit merging can reach)")
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of every config')
    return p.parse_args(argv)


class Run(NamedTuple):
    label: str
    path: str
    override: dict
    limit_of: Optional[int] = None  # index of the merging run this one is the limit of


def _load(path: str, cfg_options: Optional[dict]) -> Config:
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def plan_runs(args: argparse.Namespace) -> List[Run]:
    runs = [Run(osp.basename(p), p, {}) for p in args.configs]
    if args.plain_baseline:
        plain = dict(merge_mode='none', merge_schedule=None, lora_cfg=None)
        runs.insert(0, Run('plain ViT (' + runs[0].label + ')', args.configs[0], plain))
    if not args.drop_baseline:
        return runs
    out: List[Run] = []
    for run in runs:
        out.append(run)
        backbone = dict(_load(run.path, args.cfg_options).model.backbone, **run.override)
        if backbone.get('merge_mode', 'none') in ('tome', 'pyra'):
            out.append(Run(run.label + ' [drop limit]', run.path,
                           dict(run.override, merge_mode='drop'), limit_of=len(out) - 1))
    return out


def main(argv: List[str] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = plan_runs(args)
    fns, flops, shapes, names = {}, {}, set(), []
    for run in runs:
        name = run.label
        cfg = _load(run.path, args.cfg_options)
        cfg.model.backbone.update(run.override)
        cfg.model.backbone.pop('init_cfg', None)  # speed does not depend on weights
        model = build_model_from_cfg(cfg).eval()
        backbone = model.backbone
        if args.fold_lora and isinstance(backbone, PYRAViT) and backbone.merge_lora():
            name += ' [LoRA folded]'
        while name in fns:  # the same config listed twice
            name += "'"
        names.append(name)
        hw = tuple(args.img_size) if args.img_size else backbone.img_size
        hw = hw * 2 if len(hw) == 1 else hw
        shapes.add(hw)
        fns[name] = backbone if args.part == 'backbone' else \
            (lambda t, m=model: m(t, mode='tensor'))
        flops[name] = vit_macs(backbone, hw) / 1e9 if isinstance(backbone, PYRAViT) \
            else float('nan')
        print(f'built {name}: {flops[name]:.2f} GFLOPs/img at {hw[0]}x{hw[1]}', flush=True)
    if len(shapes) > 1:
        raise SystemExit(f'error: the configs use different input sizes {sorted(shapes)}; '
                         'pass --img-size to compare them on one input.')
    x = torch.randn(args.batch_size, 3, *shapes.pop())
    stats = measure_interleaved(fns, x, args.warmup, args.repeats)
    speed = {name: stats[name]['images_per_s'] for name in names}
    of_limit = {names[run.limit_of]: speed[names[run.limit_of]] / speed[names[i]]
                for i, run in enumerate(runs) if run.limit_of is not None}
    base_speed, base_flops = speed[names[0]], flops[names[0]]
    print(f'\nbatch {args.batch_size}, {args.part}, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} interleaved repeats after {args.warmup} warm-up')
    print(f'{"config":<84} {"img/s":>9} {"speed-up":>9} {"GFLOPs":>8} {"FLOPs ratio":>11}'
          + (f' {"of limit":>9}' if of_limit else ''))
    for name in names:
        limit = f' {of_limit[name]:>9.1%}' if name in of_limit else ''
        print(f'{name:<84} {speed[name]:>9.2f} {speed[name] / base_speed:>8.2f}x '
              f'{flops[name]:>8.2f} {base_flops / flops[name]:>10.2f}x' + limit)


if __name__ == '__main__':
    main()
