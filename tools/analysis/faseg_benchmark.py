"""FLOPs and peak memory of FASeg's high-resolution cross-attention (HRCA) against
full cross-attention on the whole 1/4-scale map, for one layer and a training step.

Both sides are the same FASeg model; "full" only sets hrca_omega=1 so every 1/32 pixel
(and so every 1/4-scale token) is kept, which is exactly full cross-attention (tested
in tests/test_faseg/test_hrca.py). Default omega=32 is the thesis' k = floor(HW/32).

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add;
  the thesis, like fvcore, counts multiply-adds, so divide by 2 to compare). The
  deformable-attention op of the pixel decoder is an mmcv extension the counter does
  not see; it is the same on both sides.
* Peak memory on CPU: every measurement runs in a fresh subprocess
  (``projects.core.analysis.worker``); the number is the
  increase of the process' peak resident set size (``VmHWM``, reset right before;
  projects/core/analysis/memory.py says why not ``ru_maxrss``) during the measured forward +
  backward over the resident size just before it, i.e. what the step itself
  needed at its high-water mark (allocator caching included).

--json (or --out) writes an mmadapt-analysis report: one row per side, and the old
``args`` / ``results`` keys.

Example (the thesis setting: R50, 512 x 512; it used batch 4 on a GPU):
    python tools/analysis/faseg_benchmark.py --size 512 --batch 2
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from projects.core.analysis.macs import counter_flops  # noqa: E402
from projects.core.analysis.memory import PeakSection  # noqa: E402

DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'faseg', 'faseg_r50_8xb2-160k_ade20k-512x512.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--config', default=DEFAULT_CONFIG, help='FASeg config (whole step)')
    p.add_argument('--size', type=int, default=512, help='square input size')
    p.add_argument('--batch', type=int, default=2, help='images per step')
    p.add_argument('--omega', type=float, default=32., help='HRCA k = floor(HW_1/32 / omega)')
    p.add_argument('--part', choices=['layer', 'step', 'both'], default='both')
    p.add_argument('--out', '--json', dest='out', help='also write the results as JSON here')
    p.add_argument('--inline', action='store_true',
                   help='measure in this process instead of a fresh one per measurement '
                   '(tests; the memory numbers then include what earlier ones left)')
    p.add_argument('--worker', help=argparse.SUPPRESS)  # internal: one measurement
    return p.parse_args(argv)


def measure_layer(size: int, batch: int, omega: float) -> Dict[str, float]:
    """One FASeg decoder layer (cross-attention + self-attention + FFN, 100 queries,
    256 channels, 8 heads) on the 1/4 map of a ``size``^2 image, HRCA-selected."""
    import torch
    from mmengine.config import ConfigDict

    from projects.faseg import FASegDecoderLayer, gather_tokens, select_hr_indices
    torch.manual_seed(0)
    c, q = 256, 100
    attn = dict(embed_dims=c, num_heads=8, attn_drop=0.0, proj_drop=0.0,
                dropout_layer=None, batch_first=True)
    layer = FASegDecoderLayer(**ConfigDict(
        self_attn_cfg=attn, cross_attn_cfg=attn,
        ffn_cfg=dict(embed_dims=c, feedforward_channels=2048, num_fcs=2, ffn_drop=0.0,
                     act_cfg=dict(type='ReLU', inplace=True), add_identity=True)))
    lr, hr = (size // 32, size // 32), (size // 4, size // 4)
    tokens = torch.randn(batch, hr[0] * hr[1], c)
    pos = torch.randn(batch, hr[0] * hr[1], c)
    query = torch.randn(batch, q, c, requires_grad=True)
    query_pos = torch.randn(batch, q, c)
    scores = torch.rand(batch, lr[0] * lr[1])

    def select():
        index = select_hr_indices(scores, lr, hr, omega)
        return gather_tokens(tokens, index), gather_tokens(pos, index)

    keys, key_pos = select()

    def cross_only():
        k, kp = select()
        layer.cross_attn(query, k, k, query_pos, kp)

    def full_layer():
        k, kp = select()
        out, _ = layer(query, k, k, query_pos=query_pos, key_pos=kp)
        return out

    result = dict(num_keys=keys.shape[1],
                  cross_attn_gflops=counter_flops(cross_only) / 1e9,
                  layer_gflops=counter_flops(full_layer) / 1e9)
    with PeakSection() as section:
        full_layer().sum().backward()
    result['layer_train_peak_mb'] = section.added_mb
    return result


def measure_step(config: str, size: int, batch: int, omega: float) -> Dict[str, float]:
    """Forward + backward of the whole model (loss) on random images / label maps."""
    import torch
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    import projects.faseg  # noqa: F401
    from projects.core.analysis.loading import drop_init_cfg
    from projects.core.engine.model_builder import build_model_from_cfg
    torch.manual_seed(0)
    cfg = drop_init_cfg(Config.fromfile(config))
    cfg.model.decode_head.hrca_omega = omega
    model = build_model_from_cfg(cfg).train()
    num_classes = cfg.model.decode_head.num_classes
    images = torch.randn(batch, 3, size, size)
    samples = []
    for _ in range(batch):  # blocky label maps with a few classes
        seg = torch.randint(0, num_classes, (1, size // 64, size // 64))
        seg = seg.repeat_interleave(64, 1).repeat_interleave(64, 2)
        sample = SegDataSample(gt_sem_seg=PixelData(data=seg))
        sample.set_metainfo(dict(img_shape=(size, size), pad_shape=(size, size),
                                 ori_shape=(size, size)))
        samples.append(sample)

    def step():
        losses = model(images, samples, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        model.zero_grad(set_to_none=True)

    with PeakSection() as section:
        step()
    flops = counter_flops(step) / 1e9
    return dict(step_train_peak_mb=section.added_mb, step_gflops=flops)


def _run_worker(args: argparse.Namespace) -> None:
    part, omega = args.worker.split(':')
    if part == 'layer':
        out = measure_layer(args.size, args.batch, float(omega))
    else:
        out = measure_step(args.config, args.size, args.batch, float(omega))
    print('RESULT ' + json.dumps(out))


def _spawn(args: argparse.Namespace, part: str, omega: float) -> Dict[str, float]:
    from projects.core.analysis.worker import run_in_child
    if part == 'layer':
        target, kwargs = 'measure_layer', dict(size=args.size, batch=args.batch, omega=omega)
    else:
        target, kwargs = 'measure_step', dict(config=osp.abspath(args.config), size=args.size,
                                              batch=args.batch, omega=omega)
    return run_in_child(f'{osp.abspath(__file__)}:{target}', kwargs, inline=args.inline)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    args = parse_args(argv)
    if args.worker:
        _run_worker(args)
        return {}
    parts = ['layer', 'step'] if args.part == 'both' else [args.part]
    results = {}
    for part in parts:
        for name, omega in (('full', 1.0), ('hrca', args.omega)):
            results.setdefault(name, {}).update(_spawn(args, part, omega))
    from projects.core.analysis.report import make_report, print_table, ratio, write_report
    full, hrca = results['full'], results['hrca']
    table = [dict(metric=key, full=full[key], hrca=hrca[key],
                  ratio=full[key] / hrca[key] if hrca[key] else float('inf')) for key in full]
    print_table(table, [('metric', 'metric', 's'), ('full', 'full 1/4', '.3f'),
                        ('hrca', 'HRCA', '.3f'), ('ratio', 'ratio', ratio())],
                title=f'input {args.size}x{args.size}, batch {args.batch}, HRCA omega '
                f'{args.omega:g}')
    report = make_report('faseg_benchmark', [dict(side=k, **v) for k, v in results.items()],
                         config=args.config, batch=args.batch, images='random',
                         args=vars(args), results=results)
    write_report(report, args.out)
    return results


if __name__ == '__main__':
    main()
