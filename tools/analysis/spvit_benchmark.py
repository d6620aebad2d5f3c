"""SPViT's savings, counted and measured side by side in one run: a searched
architecture built physically (compact, z folded into explicit convs) against its dense
ViT. Prints both models' GMACs (patch embedding, blocks, 1000-class head), the FLOPs
ratio, the measured CPU throughput at the same batch (interleaved median, eval, no
grad) and how much of the FLOPs speed-up the measured one realises.

Weights do not change the speed, so both models use their random initialisation; the
input is seeded noise (an architecture file has no dataset). --json writes the numbers
(schema mmadapt-analysis, the old keys kept).

Example (thesis: DeiT-B 17.6 -> 8.3 GMACs):
    python tools/analysis/spvit_benchmark.py configs/spvit/archs/spvit_deit-b_official.json \\
        --arch deit-b --batch-size 32
"""
import argparse
import os.path as osp
import sys
from typing import List

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.core.analysis.benchmark import measure_interleaved  # noqa: E402
from projects.core.analysis.loading import input_images  # noqa: E402
from projects.core.analysis.protocol import check_amp, dtype_name, under_amp  # noqa: E402
from projects.core.analysis.report import make_report, print_table, write_report  # noqa: E402
from projects.pyra import PYRAViT  # noqa: E402
from projects.spvit import SPViTArch, arch_macs, compact_overrides, load_arch  # noqa: E402


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('arch_file', help='architecture JSON')
    p.add_argument('--arch', default='deit-b', help="the dense ViT (PYRAViT arch name)")
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--patch-size', type=int, default=16)
    p.add_argument('--num-classes', type=int, default=1000)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch)')
    p.add_argument('--json', help='also write the numbers here')
    p.add_argument('--amp', choices=['bf16', 'fp16'], default=None,
                   help='time under autocast (bf16 on CPU)')
    args = p.parse_args(argv)
    try:
        check_amp(args.amp, 'cpu')
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: List[str] = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kw = dict(arch=args.arch, img_size=args.img_size, patch_size=args.patch_size,
              prop_attn=False)
    dense = PYRAViT(**kw).eval()
    spec = PYRAViT._arch_spec(args.arch)
    arch = load_arch(args.arch_file).validate(num_layers=spec['num_layers'],
                                              mlp_hidden=spec['feedforward_channels'],
                                              embed_dims=spec['embed_dims'])
    compact = PYRAViT(block_overrides=compact_overrides(arch, folded=True), **kw).eval()
    head = torch.nn.Linear(spec['embed_dims'], args.num_classes)
    grid = (args.img_size // args.patch_size,) * 2
    d, h = spec['embed_dims'], spec['num_heads']
    full = SPViTArch(ops=['msa'] * spec['num_layers'],
                     ffn=[spec['feedforward_channels']] * spec['num_layers'])
    extra = d * args.num_classes
    macs = {'dense': arch_macs(full, d, h, grid, args.patch_size, extra_macs=extra),
            'compact': arch_macs(arch, d, h, grid, args.patch_size, extra_macs=extra)}
    params = {'dense': sum(p.numel() for p in dense.parameters()),
              'compact': sum(p.numel() for p in compact.parameters())}
    x = input_images(None, None, args.batch_size, (args.img_size, args.img_size), 'random')
    print(f'timing dense and compact {args.arch} at batch {args.batch_size} '
          f'({args.warmup} warm-up + {args.repeats} interleaved repeats) ...', flush=True)
    speed = measure_interleaved({'dense': under_amp(lambda t: head(dense(t)[0]), args.amp),
                                 'compact': under_amp(lambda t: head(compact(t)[0]), args.amp)},
                                x, warmup=args.warmup, repeats=args.repeats)
    flops_speedup = macs['dense'] / macs['compact']
    measured = speed['compact']['images_per_s'] / speed['dense']['images_per_s']
    rows = [dict(model=k, gmacs=macs[k] / 1e9, params_m=params[k] / 1e6,
                 images_per_s=speed[k]['images_per_s']) for k in ('dense', 'compact')]
    out = make_report(
        'spvit_benchmark', rows, config=args.arch_file, batch=args.batch_size,
        dtype=dtype_name(args.amp), images='random', arch=arch.ops,
        gmacs={k: v / 1e9 for k, v in macs.items()},
        params_m={k: v / 1e6 for k, v in params.items()},
        images_per_s={k: v['images_per_s'] for k, v in speed.items()},
        flops_ratio=macs['compact'] / macs['dense'], flops_speedup=flops_speedup,
        measured_speedup=measured, realised=measured / flops_speedup)
    print_table(rows, [('model', 'model', 's'), ('gmacs', 'GMACs', '.2f'),
                       ('params_m', 'params(M)', '.1f'), ('images_per_s', 'img/s', '.2f')])
    print(f"FLOPs ratio {out['flops_ratio']:.3f} (speed-up {flops_speedup:.2f}x); measured "
          f"speed-up {measured:.2f}x = {out['realised']:.2f} of the FLOPs speed-up")
    write_report(out, args.json)
    return out


if __name__ == '__main__':
    main()
