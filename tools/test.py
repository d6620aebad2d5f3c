"""Test (and evaluate) a checkpoint with an mmpretrain or mmseg config.

Examples::

    python tools/test.py <config> <checkpoint.pth>
    python tools/test.py <config> <checkpoint.pth> --out results.pkl --show-dir vis/
    bash tools/dist_test.sh <config> <checkpoint.pth> 2
"""
import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.evaluator import DumpResults  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import projects  # noqa: E402,F401  (registers components, applies compat fixes)
from projects.core.compat import (init_cpu_dist, prepare_runtime_cfg,  # noqa: E402
                                  resolve_dist_backend)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test a checkpoint (mmpretrain or mmseg config).')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs and metrics '
                        '(default: config work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--out', help='dump the predictions to this .pkl file')
    parser.add_argument('--show-dir', help='save a visualisation of every prediction '
                        'in this directory (mmseg: <show-dir>/vis_data/vis_image; '
                        'mmpretrain: <work_dir>/<timestamp>/<show-dir> if relative)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=1')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_test.sh uses pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg, show_dir: str) -> None:
    """Turn on the library's visualization hook (mmseg or mmpretrain flavour)."""
    hook = cfg.get('default_hooks', {}).get('visualization', None)
    if hook is None:
        raise SystemExit('error: --show-dir needs default_hooks.visualization in the '
                         'config (SegVisualizationHook or VisualizationHook)')
    if 'Seg' in hook.get('type', ''):  # mmseg: draws into the visualizer's save_dir
        hook['draw'] = True
        hook['interval'] = 1
        cfg.visualizer['save_dir'] = show_dir
    else:  # mmpretrain: writes to out_dir (relative to the log dir)
        hook['enable'] = True
        hook['interval'] = 1
        hook['out_dir'] = show_dir


def setup_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    resolve_dist_backend(cfg)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    notes = prepare_runtime_cfg(cfg, args.launcher)
    if os.environ.get('RANK', '0') == '0':  # the runner's logger does not exist yet
        for note in notes:
            print_log(note, logger='current')
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
    if args.out:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    return metrics


if __name__ == '__main__':
    main()
