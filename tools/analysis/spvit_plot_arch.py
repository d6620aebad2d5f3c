"""Picture of an SPViT architecture: the attention op chosen per layer (coloured bar
labelled skip / 1x1 / 3x3 / MSA) and the FFN keep ratio per layer.

Example::

    python tools/analysis/spvit_plot_arch.py configs/spvit/archs/spvit_deit-b_official.json \
        --out work_dirs/spvit_deit-b.png
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects.core.analysis.report import make_report, write_report  # noqa: E402
from projects.spvit.arch import load_arch  # noqa: E402
from projects.spvit.plot import plot  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('arch', help='architecture JSON (search output or configs/spvit/archs)')
    parser.add_argument('--out', required=True, help='PNG to write')
    parser.add_argument('--title', default=None, help='default: the file name')
    parser.add_argument('--json', help='also write the per-layer ops and FFN keep counts '
                        'here (schema mmadapt-analysis)')
    args = parser.parse_args(argv)
    arch = load_arch(args.arch)
    plot(arch, args.out, args.title if args.title is not None else osp.basename(args.arch))
    print(f'wrote {args.out}')
    rows = [dict(layer=i, op=op, ffn=arch.keep_count(i)) for i, op in enumerate(arch.ops)]
    report = make_report('spvit_plot_arch', rows, config=args.arch, device=None, dtype=None,
                         mlp_hidden=arch.mlp_hidden, picture=args.out)
    write_report(report, args.json)
    return report


if __name__ == '__main__':
    main()
