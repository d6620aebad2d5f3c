"""Training peak memory (process VmHWM) and trainable parameters of an ESTA supernet
under PST against full fine-tuning of the same stitched network (every anchor
parameter and full stitching layers trainable, no LoRA or per-stitch biases).

Each mode runs in its own fresh process: build the config's model with random weights
(no checkpoints needed), then --steps training steps (forward + backward + AdamW) of a
random batch, the stitch of each step drawn uniformly, and the largest anchor run too
(in-place distillation), as in training.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--mode', choices=['pst', 'full'], default=None,
                   help='run one mode in this process (default: both, in subprocesses)')
    return p.parse_args(argv)


def run_mode(args) -> dict:
    import copy

    import torch
    from mmengine.config import Config
    from mmengine.structures import LabelData  # noqa: F401

    import projects  # noqa: F401
    from projects.core.analysis.memory import peak_rss_mb, reset_peak_rss, rss_mb
    from projects.core.engine.model_builder import build_model_from_cfg
    from mmpretrain.structures import DataSample

    cfg = Config.fromfile(args.config)
    cfg = copy.deepcopy(cfg)
    bb = cfg.model.backbone
    for anchor in bb.anchors:
        anchor.pop('init_cfg', None)
        if args.mode == 'full':
            anchor['lora_cfg'] = None
    if args.mode == 'full':
        bb.update(pst=False, frozen=False, stitch_lora_rank=None)
    model = build_model_from_cfg(cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    size = bb.anchors[0].get('img_size', 224)
    x = torch.randn(args.batch_size, 3, size, size)
    samples = [DataSample().set_gt_label(i % 10) for i in range(args.batch_size)]
    gen = torch.Generator().manual_seed(0)
    reset_peak_rss()
    base = rss_mb()
    for _ in range(args.steps):
        model.backbone.set_stitch(int(torch.randint(model.backbone.num_stitches, (1,),
                                                    generator=gen)))
        losses = model.loss(x, samples)
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dict(mode=args.mode, trainable=sum(p.numel() for p in params),
                total=sum(p.numel() for p in model.parameters()),
                peak_mb=peak_rss_mb(), start_mb=base, step_peak_mb=peak_rss_mb() - base,
                batch_size=args.batch_size, steps=args.steps)


def main(argv=None):
    args = parse_args(argv)
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    results = []
    for mode in ('pst', 'full'):
        out = subprocess.run([sys.executable, __file__, args.config, '--mode', mode,
                              '--batch-size', str(args.batch_size), '--steps',
                              str(args.steps)], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stdout[-3000:] + out.stderr[-3000:])
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"{r['mode']:>4}: trainable {r['trainable'] / 1e6:.3f} M of {r['total'] / 1e6:.2f} M, "
              f"peak RSS {r['peak_mb']:.0f} MiB (training steps added {r['step_peak_mb']:.0f} MiB)")
    print(json.dumps(results))


if __name__ == '__main__':
    main()
