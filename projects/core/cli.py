"""What tools/train.py and tools/test.py share: launcher arguments, loading the config
with the user's overrides, the work dir, and building the runner (CPU DDP included)."""
import argparse
import logging
import os
import os.path as osp
from typing import List

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .compat import init_cpu_dist, resolve_dist_backend


def add_common_args(parser: argparse.ArgumentParser, cfg_example: str,
                    dist_script: str) -> None:
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help=f'override config entries, e.g. {cfg_example}; lists as '
                        'key="[a,b]" (no spaces)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help=f'job launcher ({dist_script} uses pytorch)')
    # torchrun passes --local-rank (older launchers --local_rank)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def parse_args_with_rank(parser: argparse.ArgumentParser,
                         argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_cfg(args: argparse.Namespace) -> Config:
    """Config with the CLI overrides, launcher and work dir (CLI > config > file name)."""
    cfg = Config.fromfile(args.config)
    # Our runtimes default to gloo; with CUDA switch to nccl before the user's
    # --cfg-options so an explicit choice still wins.
    resolve_dist_backend(cfg)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def log_notes(notes: List[str], level: int = logging.INFO) -> None:
    if os.environ.get('RANK', '0') == '0':  # the runner's logger does not exist yet
        for note in notes:
            print_log(note, logger='current', level=level)


def build_runner(cfg: Config) -> Runner:
    """The config's runner (``runner_type``, e.g. SPTRunner, or mmengine's Runner);
    CPU process groups are created here because mmengine only knows nccl for DDP."""
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        init_cpu_dist(cfg.launcher, cfg.env_cfg.dist_cfg.backend,
                      cfg.env_cfg.dist_cfg.get('timeout', None))
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
