"""Test (and evaluate) a checkpoint with an mmpretrain or mmseg config.

Examples::

    python tools/test.py <config> <checkpoint.pth>
    python tools/test.py <config> <checkpoint.pth> --out results.pkl --show-dir vis/
    bash tools/dist_test.sh <config> <checkpoint.pth> 2

An adapter-only checkpoint (AdapterCheckpointHook) is tested the same way: its frozen
base is loaded from the config's init_cfg checkpoint, and a base other than the one
it was trained on is refused (projects/core/checkpoint/adapter_only.py).
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import Config  # noqa: E402
from mmengine.evaluator import DumpResults  # noqa: E402

import projects  # noqa: E402,F401  (registers components, applies compat fixes)
from projects.core.engine.cli import (add_common_args, add_partial_load_arg,  # noqa: E402
                                      apply_partial_load, build_runner,
                                      exit_on_checkpoint_mismatch, load_cfg, log_notes,
                                      parse_args_with_rank, refuse_damaged_checkpoint)
from projects.core.runtime.compat import prepare_runtime_cfg  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test a checkpoint (mmpretrain or mmseg config).')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (full, or adapter-only with '
                        "the config's init_cfg checkpoint as its base)")
    parser.add_argument('--work-dir', help='directory for logs and metrics '
                        '(default: config work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--out', help='dump the predictions to this .pkl file')
    parser.add_argument('--show-dir', help='save a visualisation of every prediction '
                        'in this directory (mmseg: <show-dir>/vis_data/vis_image; '
                        'mmpretrain: <work_dir>/<timestamp>/<show-dir> if relative)')
    add_partial_load_arg(parser, 'the checkpoint')
    add_common_args(parser, 'test_dataloader.batch_size=1', 'tools/dist_test.sh')
    return parse_args_with_rank(parser, argv)


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
    cfg = load_cfg(args)
    refuse_damaged_checkpoint(args.checkpoint, 'checkpoint', 'Copy or save it again, or '
                              'test another checkpoint of the run.')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    apply_partial_load(cfg, args)
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    notes = prepare_runtime_cfg(cfg, args.launcher)
    log_notes(notes)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    runner = build_runner(setup_cfg(args))
    if args.out:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    with exit_on_checkpoint_mismatch():  # the checkpoint is loaded in runner.test()
        metrics = runner.test()
    return metrics


if __name__ == '__main__':
    main()
