"""Analytic FLOPs of a PYRAViT forward with the token counts merging really leaves.

Counted as multiply-accumulates (the fvcore / mmengine "FLOPs" convention used by ToMe,
PYRA and most ViT papers): patch embedding, per block q/k/v + attention (QK^T and AV) +
output projection on the tokens entering it, the MLP on the tokens left after its merge,
and the matching (A x B similarity; none for the drop-only baseline). Unmerging is a
gather and costs no MACs.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

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


def vit_macs(model, img_hw: Tuple[int, int],
             mlp_tokens: Optional[Sequence[float]] = None) -> float:
    """MACs of one image through ``model`` (a PYRAViT) at ``img_hw``.

    ``mlp_tokens[i]``: tokens that really ran layer i's MLP (a token gate skips the
    others; see :func:`executed_macs`), default all of them. Block parts with a
    ``macs(num_tokens)`` method (adapters, dispatchers) add their own count.
    """
    d = model.embed_dims
    p = model.patch_size
    grid = (img_hw[0] // p) * (img_hw[1] // p)
    hidden = model.blocks[0].mlp.fc1.out_features
    macs = grid * d * 3 * p * p
    for i, (n_in, n_out) in enumerate(token_trace(model, img_hw)):
        block = model.blocks[i]
        macs += n_in * 3 * d * d          # qkv
        macs += 2 * n_in * n_in * d       # QK^T and AV
        macs += n_in * d * d              # proj
        if n_out < n_in and model.merge_mode != 'drop':   # matching on mean keys
            head_dim = d // block.attn.num_heads
            macs += ((n_in + 1) // 2) * (n_in // 2) * head_dim
        macs += 2 * (n_out if mlp_tokens is None else mlp_tokens[i]) * d * hidden  # MLP
        for part in (block.mlp_gate, block.adapter):
            if part is not None and hasattr(part, 'macs'):
                macs += part.macs(n_out)
    return macs


@torch.no_grad()
def executed_macs(model, images: Tensor) -> float:
    """MACs per image of what ``model`` really ran on ``images`` (eval mode): the MLP of
    each layer counted on the tokens its gate let through (``ctx.masks['mlp.<i>']``),
    not on a prefix of the tokens."""
    _, ctx = model.forward_with_context(images)
    counts = []
    for i, (_, n_out) in enumerate(token_trace(model, tuple(images.shape[-2:]))):
        mask = ctx.masks.get(f'mlp.{i}')
        counts.append(n_out if mask is None else mask.float().sum().item() / images.shape[0])
    return vit_macs(model, tuple(images.shape[-2:]), counts)
