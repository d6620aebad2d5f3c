"""Draw per-query cross-attention maps of FASeg with learnable vs DFPQ positional
queries on one image (PNG), like the thesis' Fig. 5.4.

Builds the config twice, once with ``with_dfpq=False`` (Mask2Former's static learnable
positional queries) and once with ``with_dfpq=True``, loads the matching checkpoint
(train both, e.g. ``tools/train.py <tiny config>`` and the same with
``--cfg-options model.decode_head.with_dfpq=False``), runs the image, and for the
most confident queries draws the head-averaged cross-attention of the last decoder
layers of each feature level (HRCA layers attend to a token subset and are skipped),
normalised per map and laid over the image. Without checkpoints the weights are random
(seeded by --seed); --json writes the queries shown and their scores.

Example (the tiny embedded-set config):
    python tools/analysis/faseg_vis_attention.py \
        --checkpoint-learnable work_dirs/learnable/iter_200.pth \
        --checkpoint-dfpq work_dirs/dfpq/iter_200.pth --out faseg_attention.png
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'faseg',
                          'faseg_r18-tiny_1xb4-200i_embedded-seg-128x128.py')
DEFAULT_IMG = osp.join(ROOT, 'data', 'embedded_seg', 'img_dir', 'val', 'voc_val_000.png')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--checkpoint-learnable', help='weights of the with_dfpq=False model')
    p.add_argument('--checkpoint-dfpq', help='weights of the with_dfpq=True model')
    p.add_argument('--img', default=DEFAULT_IMG)
    p.add_argument('--num-queries', type=int, default=3, help='most confident queries')
    p.add_argument('--num-layers', type=int, default=3,
                   help='last N standard decoder layers shown')
    p.add_argument('--out', default='faseg_attention.png')
    p.add_argument('--seed', type=int, default=0, help='of the random weights without a '
                   'checkpoint')
    p.add_argument('--json', help='also write the shown queries here (schema '
                   'mmadapt-analysis)')
    return p.parse_args(argv)


def _load_model(cfg, with_dfpq: bool, checkpoint: Optional[str], seed: int = 0):
    from projects.core.analysis.loading import drop_init_cfg, init_weights, load_weights
    from projects.core.engine.model_builder import build_model_from_cfg
    cfg = drop_init_cfg(cfg)
    cfg.model.decode_head.with_dfpq = with_dfpq
    torch.manual_seed(seed)
    model = build_model_from_cfg(cfg)
    if checkpoint:
        ckpt = load_weights(model, checkpoint, strict=True)
        model.dataset_meta = ckpt.get('meta', {}).get('dataset_meta', None)
    else:
        print(f'warning: no checkpoint for with_dfpq={with_dfpq}: random weights')
        init_weights(model)
    return model.eval()


def attention_maps(model, data: dict, num_queries: int, num_layers: int):
    """Returns (title per query, maps (num_queries, num_layers, h, w), layer names)."""
    head = model.decode_head
    head.record_attention = True
    with torch.no_grad():
        batch = model.data_preprocessor(data, training=False)
        feats = model.extract_feat(batch['inputs'])
        cls_preds, _ = head(feats, batch['data_samples'])
    head.record_attention = False
    probs = cls_preds[-1][0].softmax(-1)[:, :-1]  # drop "no object"
    score, label = probs.max(-1)
    queries = score.topk(num_queries).indices
    std = [(t, lvl, a) for t, (lvl, a) in enumerate(head.attn_maps) if lvl >= 0]
    std = std[-num_layers:]
    level_hw = {}
    for t, lvl, _ in std:  # grid of each level from the pixel-decoder strides
        stride = head.pixel_decoder.strides[::-1][lvl]
        h, w = batch['inputs'].shape[-2:]
        level_hw[lvl] = (-(-h // stride), -(-w // stride))
    maps = []
    for _, lvl, attn in std:
        m = attn[0, queries].view(len(queries), 1, *level_hw[lvl])
        m = F.interpolate(m, size=batch['inputs'].shape[-2:], mode='bilinear',
                          align_corners=False)[:, 0]
        lo = m.flatten(1).min(1).values[:, None, None]
        hi = m.flatten(1).max(1).values[:, None, None]
        maps.append((m - lo) / (hi - lo + 1e-12))
    classes = model.dataset_meta['classes'] if getattr(model, 'dataset_meta', None) else None
    titles = [f'q{q.item()} {classes[label[q]] if classes else label[q].item()} '
              f'({score[q]:.2f})' for q in queries]
    names = [f'layer {t} (1/{head.pixel_decoder.strides[::-1][lvl]})' for t, lvl, _ in std]
    return titles, torch.stack(maps, 1).numpy(), names


def main(argv: Optional[List[str]] = None) -> str:
    args = parse_args(argv)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mmengine.config import Config
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import init_default_scope

    import projects  # noqa: F401
    import projects.faseg  # noqa: F401
    cfg = Config.fromfile(args.config)
    init_default_scope('mmseg')
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if t['type'] != 'LoadAnnotations'])
    data = pseudo_collate([pipeline(dict(img_path=args.img))])
    image = data['inputs'][0].permute(1, 2, 0).numpy()[..., ::-1]  # BGR -> RGB
    rows, shown = [], []
    for name, dfpq, ckpt in (('learnable', False, args.checkpoint_learnable),
                             ('DFPQ', True, args.checkpoint_dfpq)):
        model = _load_model(cfg, dfpq, ckpt, args.seed)
        titles, maps, names = attention_maps(model, data, args.num_queries, args.num_layers)
        rows += [(f'{name}: {t}', m, names) for t, m in zip(titles, maps)]
        shown += [dict(model=name, query=t, layers=names) for t in titles]
    ncols = args.num_layers + 1
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.2 * ncols, 2.2 * len(rows)),
                             squeeze=False)
    for r, (title, maps, names) in enumerate(rows):
        axes[r, 0].imshow(image)
        axes[r, 0].set_ylabel(title, fontsize=7)
        for c, (m, n) in enumerate(zip(maps, names), start=1):
            axes[r, c].imshow(image)
            axes[r, c].imshow(m[:image.shape[0], :image.shape[1]], cmap='jet', alpha=0.55)
            if r == 0:
                axes[r, c].set_title(n, fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title('image', fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f'saved {args.out}')
    from projects.core.analysis.report import make_report, write_report
    write_report(make_report('faseg_vis_attention', shown, config=args.config, batch=1,
                             images=args.img, seed=args.seed, picture=args.out), args.json)
    return args.out


if __name__ == '__main__':
    main()
