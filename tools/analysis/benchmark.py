r"""Compare the inference speed of two (or more) configs side by side in one run.

Builds each config's model (random weights: speed does not depend
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

With --part model --breakdown (dense end to end) the same interleaved run also times
each backbone alone and, for merging backbones, the unmerge of its taps back to the
grid, and prints per image: whole model, backbone, unmerge, the rest (neck + head =
model - backbone), and multiply-adds counted by torch's FlopCounterMode (the mmcv
deformable-attention op is not counted). Example (Segmenter, ViT-B/16, 512^2):
    python tools/analysis/benchmark.py \
        configs/pyra/seg/lora_segmenter-mask_vit-b16_8xb1-160k_ade20k-512x512.py \
        configs/pyra/seg/tome-lora-low_segmenter-mask_vit-b16_8xb1-160k_ade20k-512x512.py \
        configs/pyra/seg/pyra-lora-low_segmenter-mask_vit-b16_8xb1-160k_ade20k-512x512.py \
        --batch-size 1 --part model --fold-lora --breakdown

With --onnx every row is also exported to ONNX (opset 17, the timed part at the timed
batch shape), checked against PyTorch with onnxruntime (1e-4 of the output scale, as
tools/deployment/pytorch2onnx.py checks it) and timed by onnxruntime on the same CPU
threads, interleaved with the PyTorch rows of the same run: two more columns, onnxruntime
images/s and its ratio to PyTorch's. A row whose graph is refused or differs shows n/a
and the reason.
"""
import argparse
import os.path as osp
import sys
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
from mmengine.config import Config, DictAction
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.core.analysis.benchmark import measure_interleaved  # noqa: E402
from projects.core.engine.model_builder import build_model_from_cfg  # noqa: E402
from projects.pyra.backbone import MERGE_OPTIONS  # noqa: E402
from projects.vit import ComposableViT  # noqa: E402
from projects.pyra.flops import vit_macs  # noqa: E402
from projects.pyra.token_merge import unmerge  # noqa: E402


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
    p.add_argument('--merge-modes', nargs='+', choices=['none', 'tome', 'pyra'],
                   help="run every config once per merge mode, with its own schedule "
                        "('none' drops the schedule): plain / ToMe / PYRA side by side "
                        'from one PYRA config')
    p.add_argument('--breakdown', action='store_true',
                   help='with --part model: also time each backbone alone and its unmerge '
                        'in the same run, and print where the time and the counted '
                        'multiply-adds go (backbone / unmerge / neck + head)')
    p.add_argument('--onnx', action='store_true',
                   help='also export every row to ONNX, check it against PyTorch and time '
                        'it with onnxruntime in the same interleaved run')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of every config')
    args = p.parse_args(argv)
    if args.breakdown and args.part != 'model':
        p.error('--breakdown splits the whole model\'s time: use it with --part model')
    return args


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


def _mode_runs(path: str, modes: Optional[List[str]],
               cfg_options: Optional[dict]) -> List[Run]:
    """One run of ``path``, or one per merge mode with the config's own schedule."""
    label = osp.basename(path)
    if not modes:
        return [Run(label, path, {})]
    schedule = _load(path, cfg_options).model.backbone.get('merge_schedule')
    if schedule is None and set(modes) - {'none'}:
        raise SystemExit(f'error: --merge-modes {" ".join(modes)}: {path} has no '
                         'merge_schedule to merge with; pass a merging config (or '
                         '--cfg-options model.backbone.merge_schedule=...).')
    return [Run(f'{label} [{mode}]', path, dict(merge_mode='none', merge_schedule=None)
                if mode == 'none' else dict(merge_mode=mode)) for mode in modes]


def plan_runs(args: argparse.Namespace) -> List[Run]:
    runs = [run for p in args.configs
            for run in _mode_runs(p, args.merge_modes, args.cfg_options)]
    if args.plain_baseline:
        # the method-free ViT: no merging options at all, no LoRA
        plain = dict(type='ComposableViT', lora_cfg=None, **{k: None for k in MERGE_OPTIONS})
        runs.insert(0, Run('plain ViT (' + osp.basename(args.configs[0]) + ')',
                           args.configs[0], plain))
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


def counted_macs(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    """Multiply-adds of one call per image (FlopCounterMode counts 2 FLOPs per MAC)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops() / 2 / x.shape[0]


def unmerge_fn(backbone: ComposableViT, x: torch.Tensor) -> Optional[Callable]:
    """One gather back to the full grid per tap, of the last layer's tokens of one
    forward on ``x`` (a gather's cost depends on the grid it fills, not on the layer),
    or None when the backbone does not merge."""
    with torch.no_grad():
        tokens, ctx = backbone.embed(x)
        tokens, ctx, _ = backbone.forward_blocks(tokens, ctx)
    if ctx.groups is None or ctx.groups.assignment is None:
        return None
    n = len(backbone.out_indices)
    return lambda _t: [unmerge(tokens, ctx.groups.assignment) for _ in range(n)]


def main(argv: List[str] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = plan_runs(args)
    models, flops, shapes, names = {}, {}, set(), []
    for run in runs:
        name = run.label
        cfg = _load(run.path, args.cfg_options)
        cfg.model.backbone.update(run.override)
        if run.override.get('type') == 'ComposableViT':
            for key in MERGE_OPTIONS:
                cfg.model.backbone.pop(key, None)
        cfg.model.backbone.pop('init_cfg', None)  # speed does not depend on weights
        model = build_model_from_cfg(cfg).eval()
        backbone = model.backbone
        if args.fold_lora and isinstance(backbone, ComposableViT) and backbone.merge_lora():
            name += ' [LoRA folded]'
        while name in models:  # the same config listed twice
            name += "'"
        names.append(name)
        models[name] = model
        hw = tuple(args.img_size) if args.img_size else backbone.img_size
        hw = hw * 2 if len(hw) == 1 else hw
        shapes.add(hw)
        flops[name] = vit_macs(backbone, hw) / 1e9 if isinstance(backbone, ComposableViT) \
            else float('nan')
        print(f'built {name}: {flops[name]:.2f} GFLOPs/img at {hw[0]}x{hw[1]}', flush=True)
    if len(shapes) > 1:
        raise SystemExit(f'error: the configs use different input sizes {sorted(shapes)}; '
                         'pass --img-size to compare them on one input.')
    x = torch.randn(args.batch_size, 3, *shapes.pop())
    fns: Dict[str, Callable] = {}
    for name in names:
        model = models[name]
        fns[name] = model.backbone if args.part == 'backbone' else \
            (lambda t, m=model: m(t, mode='tensor'))
    parts: Dict[str, Dict[str, str]] = {}  # model row -> {part: its timed row}
    if args.breakdown:
        for name in names:
            timed = {part: fn for part, fn in part_fns(models[name], x).items()
                     if fn is not None}
            parts[name] = {part: f'{name} [{part}]' for part in timed}
            fns.update({parts[name][part]: fn for part, fn in timed.items()})
    if args.onnx:
        timed = {name: models[name].backbone if args.part == 'backbone' else
                 _TensorMode(models[name]) for name in names}
        fns.update(onnx_fns(timed, x, torch.get_num_threads()))
    stats = measure_interleaved(fns, x, args.warmup, args.repeats)
    speed = {name: stats[name]['images_per_s'] for name in names}
    of_limit = {names[run.limit_of]: speed[names[run.limit_of]] / speed[names[i]]
                for i, run in enumerate(runs) if run.limit_of is not None}
    base_speed, base_flops = speed[names[0]], flops[names[0]]
    print(f'\nbatch {args.batch_size}, {args.part}, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} interleaved repeats after {args.warmup} warm-up')
    print(f'{"config":<84} {"img/s":>9} {"speed-up":>9} {"GFLOPs":>8} {"FLOPs ratio":>11}'
          + (f' {"of limit":>9}' if of_limit else '')
          + (f' {"onnx img/s":>10} {"onnx/torch":>10}' if args.onnx else ''))
    for name in names:
        limit = f' {of_limit[name]:>9.1%}' if name in of_limit else ''
        onnx = ''
        if args.onnx:
            row = stats.get(f'{name} [onnx]')
            onnx = (f' {row["images_per_s"]:>10.2f} {row["images_per_s"] / speed[name]:>9.2f}x'
                    if row else f' {"n/a":>10} {"n/a":>10}')
        print(f'{name:<84} {speed[name]:>9.2f} {speed[name] / base_speed:>8.2f}x '
              f'{flops[name]:>8.2f} {base_flops / flops[name]:>10.2f}x' + limit + onnx)
    if args.breakdown:
        print_breakdown(names, models, parts, stats, x)


class _TensorMode(torch.nn.Module):
    """``model(x, mode='tensor')`` as a module: what a --part model row times."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model(x, mode='tensor')


def onnx_fns(modules: Dict[str, torch.nn.Module], x: torch.Tensor,
             threads: int) -> Dict[str, Callable]:
    """Per row: onnxruntime running the row's timed module exported on ``x`` and
    checked against it (``{name} [onnx]``); rows that do not export print why and get
    none."""
    from projects.core.deployment.onnx_export import (ExportMismatch, ExportRefused,
                                                 export_and_check, ort_session)
    out = {}
    for name, module in modules.items():
        try:
            data, report = export_and_check(module.eval(), x)
        except (ExportRefused, ExportMismatch, torch.onnx.errors.OnnxExporterError) as err:
            print(f'onnx: {name}: not exported: {str(err).splitlines()[0]}', flush=True)
            continue
        print(f'onnx: {name}: equals PyTorch ({report.worst})', flush=True)
        session = ort_session(data, threads)
        input_name = session.get_inputs()[0].name
        out[f'{name} [onnx]'] = \
            lambda t, s=session, i=input_name: s.run(None, {i: t.numpy()})
    return out


def part_fns(model, x: torch.Tensor) -> Dict[str, Optional[Callable]]:
    """The parts of a segmentor's tensor forward, each timed on its own: the backbone
    (unmerge included), the unmerge alone, and the decode head on cached features
    (after the neck, if any)."""
    backbone = model.backbone
    with torch.no_grad():
        feats = model.extract_feat(x)
    return {'backbone': backbone,
            'unmerge': unmerge_fn(backbone, x) if isinstance(backbone, ComposableViT) else None,
            'head': lambda _t, m=model, f=feats: m.decode_head(f)}


def print_breakdown(names: List[str], models: dict, parts: Dict[str, Dict[str, str]],
                    stats: dict, x: torch.Tensor) -> None:
    """Per-image time and counted multiply-adds of backbone / unmerge / head."""
    def ms(row: Optional[str]) -> float:
        return 1e3 * stats[row]['median_batch_s'] / x.shape[0] if row else 0.0

    print('\nwhere the time goes (ms per image, medians of the same run; backbone includes '
          'its unmerge; other = model - backbone - head: neck, resizing; GMACs counted by '
          "FlopCounterMode on one image, torch's fused CPU attention and mmcv's deformable "
          'attention not counted)')
    print(f'{"config":<84} {"model":>8} {"backbone":>9} {"unmerge":>8} {"head":>8} '
          f'{"other":>7} {"head %":>7} {"GMACs":>7} {"backbone":>9} {"head":>7}')
    one = x[:1]
    for name in names:
        model, row = models[name], parts[name]
        total, bb, un, head = (ms(name), ms(row['backbone']), ms(row.get('unmerge')),
                               ms(row['head']))
        macs = counted_macs(lambda t, m=model: m(t, mode='tensor'), one) / 1e9
        bb_macs = counted_macs(model.backbone, one) / 1e9
        with torch.no_grad():
            feats = model.extract_feat(one)
        head_macs = counted_macs(lambda _t: model.decode_head(feats), one) / 1e9
        unmerge_ms = f'{un:>8.2f}' if 'unmerge' in row else f'{"-":>8}'
        print(f'{name:<84} {total:>8.1f} {bb:>9.1f} {unmerge_ms} {head:>8.1f} '
              f'{total - bb - head:>7.1f} {head / total:>7.1%} {macs:>7.2f} {bb_macs:>9.2f} '
              f'{head_macs:>7.2f}')


if __name__ == '__main__':
    main()
