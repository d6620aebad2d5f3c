"""Export stitches of a trained ESTA supernet as standalone models: for each stitch a
config and a checkpoint (<out-dir>/stitch_<id>.py / .pth) with the shared LoRA and the
stitch's own biases folded into the weights, which tools/test.py runs as they are.

By default the stitches of the run's esta_deploy.json (per FLOPs interval the top-scored
stitch, or the most accurate on val200 with ESTASamplingHook(select='val'); written when
training ends) are exported. With a head per anchor each export has the head of the
anchor its stitch ends in. The checkpoint may be
adapter-only (AdapterCheckpointHook): the anchors' init_cfg checkpoints of the config
are then its base, checked against the one it was trained on.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config', help='the ESTA training config')
    p.add_argument('checkpoint', help='the trained supernet checkpoint (full or adapter-only)')
    p.add_argument('--stitches', type=int, nargs='+', default=None,
                   help='stitch ids (default: those in esta_deploy.json)')
    p.add_argument('--work-dir', default=None,
                   help='folder with esta_deploy.json (default: the checkpoint folder)')
    p.add_argument('--out-dir', default=None, help='default: <work-dir>/deploy')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config

    import projects  # noqa: F401
    from projects.core.checkpoint.adapter_only import AdapterBaseError
    from projects.esta.deploy import deployed_stitches, export_stitches
    work_dir = args.work_dir or osp.dirname(osp.abspath(args.checkpoint))
    stitches = args.stitches or deployed_stitches(work_dir)
    out_dir = args.out_dir or osp.join(work_dir, 'deploy')
    try:
        paths = export_stitches(Config.fromfile(args.config), args.checkpoint, stitches,
                                out_dir)
    except AdapterBaseError as err:  # a user error: no traceback
        raise SystemExit(f'error: {err}') from None
    for path in paths:
        print(f'python tools/test.py {path} {path[:-3]}.pth')


if __name__ == '__main__':
    main()
