"""Export the compact model of an SPViT search: architecture JSON, a compact backbone
checkpoint that loads strictly, and a config inheriting the fine-tune base.

Weights are gathered from the original pretrained checkpoint by default (official
SPViT: the supernet is discarded, z restarts uniform, BN fresh); --from-supernet
carries the supernet's weights, z and BN.

Examples:
    # from the search checkpoint (the architecture is read from its gates)
    python tools/model_converters/spvit_export.py \
        configs/spvit/spvit-search_deit-s_8xb128-20e_in1k-224px.py \
        work_dirs/search/epoch_10.pth --out-dir work_dirs/compact
    # from an architecture file (e.g. the official searched DeiT-B)
    python tools/model_converters/spvit_export.py \
        configs/spvit/spvit-search_deit-b_8xb128-20e_in1k-224px.py \
        --arch configs/spvit/archs/spvit_deit-b_official.json --out-dir work_dirs/compact
    python tools/train.py work_dirs/compact/spvit_compact.py
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import projects  # noqa: E402,F401
from projects.spvit.export import export_compact  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', help='the search config')
    parser.add_argument('checkpoint', nargs='?', help='a checkpoint of the search run')
    parser.add_argument('--arch', help='architecture JSON instead of the checkpoint gates')
    parser.add_argument('--out-dir', required=True, help='where to write the compact files')
    parser.add_argument('--finetune-base', help='config the compact config inherits '
                        '(default: spvit_finetune_base of the search config)')
    parser.add_argument('--pretrained', help='dense checkpoint to gather weights from '
                        '(default: the search backbone init_cfg checkpoint)')
    parser.add_argument('--from-supernet', action='store_true',
                        help='gather from the search checkpoint instead')
    parser.add_argument('--skip-op', choices=['ln', 'zero'], default=None,
                        help="what a skipped layer adds: nothing ('zero', thesis Eq. 4.16) "
                        "or LN(x) ('ln', official fine-tune code); default: the search "
                        "config's op, so the compact model is the network the search scored")
    parser.add_argument('--fold', action='store_true',
                        help='fold z into explicit conv modules (deployment)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the search config')
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    paths = export_compact(cfg, args.out_dir, checkpoint=args.checkpoint, arch=args.arch,
                           finetune_base=args.finetune_base, pretrained=args.pretrained,
                           supernet=args.from_supernet, skip_op=args.skip_op, fold=args.fold)
    for kind, path in paths.items():
        print(f'{kind}: {path}')
    return paths


if __name__ == '__main__':
    main()
