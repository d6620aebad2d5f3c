"""Train a model from an mmpretrain or mmseg config (the config's ``default_scope``
selects the library).

Examples::

    python tools/train.py configs/pyra/<config>.py --work-dir work_dirs/x
    python tools/train.py <config> --resume              # latest ckpt in work_dir
    python tools/train.py <config> --resume <ckpt.pth>   # a given checkpoint
    bash tools/dist_train.sh <config> 2 --work-dir work_dirs/x
"""
import argparse
import logging
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner, find_latest_checkpoint  # noqa: E402

import projects  # noqa: E402,F401  (registers components, applies compat fixes)
from projects.core.compat import (init_cpu_dist, prepare_runtime_cfg,  # noqa: E402
                                  resolve_dist_backend)


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
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=10 '
        'optim_wrapper.optimizer.lr=1e-3; lists as key="[a,b]" (no spaces)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_train.sh uses pytorch)')
    # torchrun passes --local-rank (older launchers --local_rank)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    # Our runtimes default to gloo; with CUDA switch to nccl before the user's
    # --cfg-options so an explicit choice still wins.
    resolve_dist_backend(cfg)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher

    # work_dir priority: CLI > config > config file name
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

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

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    notes = prepare_runtime_cfg(cfg, args.launcher)
    if args.resume == 'auto' and not find_latest_checkpoint(cfg.work_dir):
        notes.append(f'--resume: no checkpoint in {cfg.work_dir}; training starts '
                     'from scratch')
    if os.environ.get('RANK', '0') == '0':  # the runner's logger does not exist yet
        for note in notes:
            print_log(note, logger='current', level=logging.WARNING)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = setup_cfg(args)
    if args.launcher != 'none' and not torch.cuda.is_available():
        init_cpu_dist(args.launcher, cfg.env_cfg.dist_cfg.backend,
                      cfg.env_cfg.dist_cfg.get('timeout', None))
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
