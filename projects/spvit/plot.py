"""Picture of an SPViT architecture: the attention op per layer (skip / 1x1 / 3x3 /
MSA) and the FFN keep ratio per layer. One copy, used by
``tools/analysis/spvit_plot_arch.py`` and the embedded pipeline (``embedded.py``)."""
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from ..core.engine.atomic_io import atomic_open  # noqa: E402
from .arch import OPS, SPViTArch  # noqa: E402

COLOURS = {'skip': '#bbbbbb', 'conv1x1': '#8fbbd9', 'conv3x3': '#3d7fb8', 'msa': '#e07b39'}
LABELS = {'skip': 'skip', 'conv1x1': '1x1', 'conv3x3': '3x3', 'msa': 'MSA'}


def plot(arch: SPViTArch, out: str, title: str = '') -> str:
    """Write the PNG to ``out`` (atomically) and return ``out``."""
    hidden = arch.mlp_hidden or max(arch.keep_count(i) for i in range(arch.num_layers)) or 1
    layers = list(range(arch.num_layers))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 0.5 * len(layers)), 4.5),
                                      sharex=True, gridspec_kw=dict(height_ratios=[1, 2]))
    for i, op in enumerate(arch.ops):
        top.bar(i, 1, color=COLOURS[op], edgecolor='black', linewidth=0.5)
        top.text(i, 0.5, LABELS[op], ha='center', va='center', fontsize=8)
    top.set_yticks([])
    top.set_ylabel('attention op')
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[o]) for o in OPS]
    top.legend(handles, [LABELS[o] for o in OPS], ncol=4, fontsize=7, loc='upper center',
               bbox_to_anchor=(0.5, 1.45), frameon=False)
    ratios = [arch.keep_count(i) / hidden for i in layers]
    bottom.bar(layers, ratios, color='#6a9f58')
    for i, r in enumerate(ratios):
        bottom.text(i, r + 0.02, f'{r:.2f}', ha='center', fontsize=7)
    bottom.set_ylim(0, 1.12)
    bottom.set_ylabel('FFN keep ratio')
    bottom.set_xlabel('layer')
    bottom.set_xticks(layers)
    if title:
        fig.suptitle(title, fontsize=9, y=0.995)
    fig.tight_layout()
    with atomic_open(out, 'wb') as f:
        fig.savefig(f, format='png', dpi=130)
    plt.close(fig)
    return out
