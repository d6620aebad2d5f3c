"""Analytic FLOPs of a PYRAViT forward with the token counts merging really leaves.

Counted as multiply-accumulates (the fvcore / mmengine "FLOPs" convention used by ToMe,
PYRA and most ViT papers): patch embedding, per block q/k/v + attention (QK^T and AV) +
output projection on the tokens entering it, the MLP on the tokens left after its merge,
and the matching (A x B similarity; none for the drop-only baseline). Unmerging is a
gather and costs no MACs.
"""
from typing import List, Tuple

from .token_merge import max_merge


def token_trace(model, img_hw: Tuple[int, int]) -> List[Tuple[int, int]]:
    """(tokens entering, tokens after merge) for each block at input size ``img_hw``."""
    grid = (img_hw[0] // model.patch_size, img_hw[1] // model.patch_size)
    n = grid[0] * grid[1] + int(model.with_cls_token)
    trace = []
    for r in model.runtime_schedule(grid[0] * grid[1]):
        r = min(r, max_merge(n, model.with_cls_token)) if model.merge_mode != 'none' else 0
        trace.append((n, n - r))
        n -= r
    return trace


def vit_macs(model, img_hw: Tuple[int, int]) -> int:
    """MACs of one image through ``model`` (a PYRAViT) at ``img_hw``."""
    d = model.embed_dims
    p = model.patch_size
    grid = (img_hw[0] // p) * (img_hw[1] // p)
    hidden = model.blocks[0].mlp.fc1.out_features
    macs = grid * d * 3 * p * p
    for n_in, n_out in token_trace(model, img_hw):
        macs += n_in * 3 * d * d          # qkv
        macs += 2 * n_in * n_in * d       # QK^T and AV
        macs += n_in * d * d              # proj
        if n_out < n_in and model.merge_mode != 'drop':   # matching on mean keys
            head_dim = d // model.blocks[0].attn.num_heads
            macs += ((n_in + 1) // 2) * (n_in // 2) * head_dim
        macs += 2 * n_out * d * hidden    # MLP
    return macs
