"""Seed aggregation, the printed table and the accuracy-versus-throughput figure."""
import math
import statistics
from typing import Dict, List, Sequence, Tuple

Row = Dict[str, float]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single seed)."""
    values = list(values)
    if not values:
        raise ValueError('mean_std: no values (no seed finished).')
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def aggregate(per_seed: Dict[int, Dict[str, Row]]) -> Dict[str, Row]:
    """``{seed: {method: row}}`` -> ``{method: row}`` with ``acc``/``acc_std`` over seeds
    and the other numeric columns averaged (rows keep the first seed's order)."""
    seeds = sorted(per_seed)
    names = list(per_seed[seeds[0]])
    out = {}
    for name in names:
        rows = [per_seed[s][name] for s in seeds if name in per_seed[s]]
        acc, acc_std = mean_std([r['acc'] for r in rows])
        row = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]
               if isinstance(rows[0][k], (int, float)) and k != 'acc'}
        row.update(acc=acc, acc_std=acc_std, seeds=len(rows))
        out[name] = row
    return out


def format_table(rows: Dict[str, Row], title: str, base: str,
                 split: str = 'test') -> List[str]:
    """The console table; speed-up is relative to the row ``base``; ``split`` names the
    split the accuracy was measured on."""
    multi = any(r.get('seeds', 1) > 1 for r in rows.values())
    acc_head = f'{split} top-1 (mean ± std)' if multi else f'{split} top-1'
    lines = [title,
             f'{"method":<14} {acc_head:>23} {"img/s":>8} {"speed-up":>9} {"GFLOPs":>7} '
             f'{"MLP tokens":>10} {"trainable":>10} {"minutes":>8}']
    ref = rows[base]['img_per_s'] if base in rows else math.nan
    for name, r in rows.items():
        acc = f'{r["acc"]:.2f} ± {r["acc_std"]:.2f} %' if multi else f'{r["acc"]:.2f} %'
        lines.append(
            f'{name:<14} {acc:>23} {r["img_per_s"]:>8.1f} {r["img_per_s"] / ref:>8.2f}x '
            f'{r["gflops"]:>7.3f} {r["mlp_tokens"]:>9.1%} {int(r["trainable"]):>10,d} '
            f'{r["minutes"]:>8.1f}')
    for name, r in rows.items():
        if 'complete_acc' in r:  # DyT: what eval runs beside what training targets
            lines.append(
                f'  {name}: eval MLP keep {r["eval_keep"]:.1%} of the patch tokens '
                f'(training target {r["train_rate"]:.1%}, training masks '
                f'{r["train_rate_expected"]:.1%}); complete model (every token through '
                f'every MLP) {r["complete_acc"]:.2f} %')
    return lines


def build_figure(rows: Dict[str, Row], title: str, batch: int = 32, split: str = 'test'):
    """Accuracy (error bars: std over seeds) against measured throughput, one labelled
    point per row. Returned rather than saved so a test can read the plotted data."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, r in rows.items():
        ax.errorbar([r['img_per_s']], [r['acc']], yerr=[r.get('acc_std', 0.0)], fmt='o',
                    capsize=3, label=name)
        ax.annotate(name, (r['img_per_s'], r['acc']), textcoords='offset points',
                    xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f'measured throughput (images/s, batch {batch}, CPU)')
    ax.set_ylabel(f'{split} top-1 (%)')
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    return fig


def save_figure(rows: Dict[str, Row], title: str, path: str, batch: int = 32,
                split: str = 'test') -> str:
    import matplotlib.pyplot as plt
    fig = build_figure(rows, title, batch, split)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
