"""Train a model from an mmpretrain or mmseg config (the config's ``default_scope``
selects the library).

Examples::

    python tools/train.py configs/pyra/<config>.py --work-dir work_dirs/x
    python tools/train.py <config> --resume              # latest ckpt in work_dir
    python tools/train.py <config> --resume <ckpt.pth>   # a given checkpoint
    bash tools/dist_train.sh <config> 2 --work-dir work_dirs/x

Adapter-only checkpoints (``--cfg-options default_hooks.checkpoint.type=
AdapterCheckpointHook``) resume like full ones: the frozen base comes from the
config's init_cfg checkpoint and must be the one they were trained on.
"""
import argparse
import logging
import os.path as osp
import sys
from typing import Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.runner import find_latest_checkpoint  # noqa: E402

import projects  # noqa: E402,F401  (registers components, applies compat fixes)
from projects.core.engine.cli import (add_common_args, add_partial_load_arg,  # noqa: E402
                                      apply_partial_load, build_runner,
                                      exit_on_checkpoint_mismatch, load_cfg, log_notes,
                                      parse_args_with_rank, refuse_damaged_checkpoint)
from projects.core.runtime.compat import prepare_runtime_cfg  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model (mmpretrain or mmseg config).')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints '
                        '(default: config work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CHECKPOINT',
        help='resume training; without a value, from the latest checkpoint in the '
        'work dir, otherwise from the given checkpoint')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (needs a CUDA device)')
    add_partial_load_arg(parser, 'the load_from checkpoint (--cfg-options load_from=CKPT)')
    add_common_args(parser, 'train_cfg.max_iters=10 optim_wrapper.optimizer.lr=1e-3',
                    'tools/dist_train.sh')
    return parse_args_with_rank(parser, argv)


def setup_cfg(args) -> Config:
    cfg = load_cfg(args)

    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('error: --amp needs a CUDA device (mmengine\'s '
                             'AmpOptimWrapper only supports GPU/NPU/MLU/MUSA); '
                             'run without --amp on CPU.')
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print_log('AMP is already enabled in the config.', logger='current',
                      level=logging.WARNING)
        elif wrapper != 'OptimWrapper':
            raise SystemExit(f'error: --amp only works with optim_wrapper type '
                             f'OptimWrapper, the config uses {wrapper}.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.partial_load and args.resume is not None:
        raise SystemExit('error: --partial-load applies to load_from (starting a new run from '
                         'another model\'s weights); --resume continues this run\'s own '
                         'checkpoint. Drop one of them.')
    apply_partial_load(cfg, args)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    latest = find_latest_checkpoint(cfg.work_dir) if args.resume == 'auto' else None
    refuse_damaged_resume(args.resume, latest, cfg.work_dir)
    notes = prepare_runtime_cfg(cfg, args.launcher)
    if args.resume == 'auto' and not latest:
        notes.append(f'--resume: no checkpoint in {cfg.work_dir}; training starts '
                     'from scratch')
    log_notes(notes, logging.WARNING)
    return cfg


def refuse_damaged_resume(resume: Optional[str], latest: Optional[str],
                          work_dir: str) -> None:
    """Stop before building the runner, naming the file and the way out, when the
    checkpoint ``--resume`` would load is truncated (mmengine's resume would fail
    after the build with torch's "failed finding central directory", no file named)."""
    if resume == 'auto':
        pointer = osp.join(work_dir, 'last_checkpoint')
        refuse_damaged_checkpoint(
            latest, f'--resume: the latest checkpoint (named by {pointer})',
            f'Delete it and write the path of the previous checkpoint into {pointer} '
            '(or pass --resume <previous checkpoint>), or train without --resume.')
    elif resume is not None:
        refuse_damaged_checkpoint(
            resume, '--resume: checkpoint', 'Delete it and pass the previous checkpoint '
            'to --resume, or train without --resume.')


def main(argv=None):
    args = parse_args(argv)
    runner = build_runner(setup_cfg(args))
    with exit_on_checkpoint_mismatch():  # load_from is loaded in runner.train()
        runner.train()


if __name__ == '__main__':
    main()
