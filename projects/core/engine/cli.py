"""What tools/train.py and tools/test.py share: launcher arguments, loading the config
with the user's overrides, the work dir, and building the runner (CPU DDP included)."""
import argparse
import contextlib
import logging
import os
import os.path as osp
import zipfile
from typing import Iterator, List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..runtime.compat import init_cpu_dist, resolve_dist_backend
from ..runtime.strict_load import PARTIAL_KEY, CheckpointMismatchError


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


def add_partial_load_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--partial-load``: the one way past the refusal of a checkpoint that does not fit
    (:mod:`projects.core.runtime.strict_load`), so a partial load is always deliberate."""
    parser.add_argument(
        '--partial-load', action='store_true',
        help=f'load {what} even if it fits the model only in part (missing, unused or '
        'shape-mismatched tensors, e.g. a classifier checkpoint into a segmentor) and log '
        f'what was not loaded; same as --cfg-options {PARTIAL_KEY}=True. Without it such '
        'a checkpoint is refused')


def apply_partial_load(cfg: Config, args: argparse.Namespace) -> None:
    if getattr(args, 'partial_load', False):
        cfg[PARTIAL_KEY] = True


@contextlib.contextmanager
def exit_on_checkpoint_mismatch() -> Iterator[None]:
    """A refused checkpoint ends the tool with its message (exit code 1), not a
    traceback through mmengine's runner."""
    try:
        yield
    except CheckpointMismatchError as err:
        raise SystemExit(f'error: {err}') from None


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


def checkpoint_damage(path: str) -> Optional[str]:
    """Why the local file ``path`` cannot be a whole torch checkpoint, or None.

    Judged from the zip directory only (no unpickling, so a resume does not read a
    large checkpoint twice): torch writes checkpoints as zip files whose directory
    is at the end, so a truncated file has none. Files that are not zips (legacy
    torch format, other formats) and remote paths are left to the loader."""
    if '://' in path or not osp.isfile(path):
        return None
    if osp.getsize(path) == 0:
        return 'the file is empty'
    with open(path, 'rb') as f:
        if f.read(4) != b'PK\x03\x04':
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        return f'its zip directory is unreadable ({err}), so the file is truncated or damaged'
    if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
        return 'it is a zip archive without data.pkl, not a PyTorch checkpoint'
    return None


def refuse_damaged_checkpoint(path: Optional[str], what: str, fix: str) -> None:
    """Exit with a message naming ``path``, its damage and ``fix`` (before the runner
    is built, instead of torch's "failed finding central directory" after it)."""
    why = checkpoint_damage(path) if path else None
    if why:
        raise SystemExit(f'error: {what} {path} cannot be loaded: {why}. {fix}')
