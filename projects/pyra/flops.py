"""Analytic FLOPs of a ComposableViT forward (PYRAViT's merging included) with the token
counts its mergers really leave.

Counted as multiply-accumulates (the fvcore / mmengine "FLOPs" convention used by ToMe,
PYRA and most ViT papers): patch embedding, per block q/k/v + attention (QK^T and AV) +
output projection on the tokens entering it, the MLP on the tokens left after its merge,
and the matching (A x B similarity; none for the drop-only baseline). Unmerging is a
gather and costs no MACs.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .merger import TokenMerger, _ScheduledStep


def token_trace(model, img_hw: Tuple[int, int]) -> List[Tuple[int, int]]:
    """(tokens entering, tokens after merge) for each block at input size ``img_hw``."""
    grid = (img_hw[0] // model.patch_size, img_hw[1] // model.patch_size)
    cls = model.with_cls_token
    n = grid[0] * grid[1] + int(cls)
    trace = []
    for block in model.blocks:
        step = block.merger
        r = step.merges_for(n, cls) if isinstance(step, _ScheduledStep) else 0
        trace.append((n, n - r))
        n -= r
    return trace


def vit_macs(model, img_hw: Tuple[int, int],
             mlp_tokens: Optional[Sequence[float]] = None,
             attn_tokens: Optional[Sequence[Optional[Sequence[float]]]] = None) -> float:
    """MACs of one image through ``model`` (a ComposableViT) at ``img_hw``.

    ``mlp_tokens[i]``: tokens that really ran layer i's MLP (a token gate skips the
    others; see :func:`executed_macs`), default all of them. ``attn_tokens[i]``: per
    sample, the tokens that ran layer i's attention (an attention gate), None = all;
    the quadratic term is averaged over samples, not taken of the mean. Block parts
    that declare their own ``macs(num_tokens)`` (adapters, gates) add it.
    """
    d = model.embed_dims
    p = model.patch_size
    grid = (img_hw[0] // p) * (img_hw[1] // p)
    hidden = model.blocks[0].mlp.fc1.out_features
    macs = grid * d * 3 * p * p
    for i, (n_in, n_out) in enumerate(token_trace(model, img_hw)):
        block = model.blocks[i]
        counts = [n_in] if attn_tokens is None or attn_tokens[i] is None else attn_tokens[i]
        macs += sum(4 * n * d * d + 2 * n * n * d for n in counts) / len(counts)  # qkv,
        # QK^T, AV, proj
        if n_out < n_in and isinstance(block.merger, TokenMerger):  # matching on mean keys
            head_dim = d // block.attn.num_heads
            macs += ((n_in + 1) // 2) * (n_in // 2) * head_dim
        macs += 2 * (n_out if mlp_tokens is None else mlp_tokens[i]) * d * hidden  # MLP
        for part in (block.attn_gate, block.mlp_gate, block.adapter):
            own = None if part is None else part.macs(n_out)
            if own is not None:
                macs += own
    return macs


@torch.no_grad()
def executed_macs(model, images: Tensor) -> float:
    """MACs per image of what ``model`` really ran on ``images`` (eval mode), read from
    the forward's gate masks (``ctx.masks``): the MLP of layer i on the tokens its gate
    let through (``'mlp.<i>'``), attention on the tokens an attention gate let through
    (``'attn.<i>'``), both for one per-token decision (``'block.<i>'``) or a per-sample
    one (``'layer.<i>'``) -- not on a prefix of the tokens."""
    _, ctx = model.forward_with_context(images)
    bsz = images.shape[0]
    mlp_counts, attn_counts = [], []
    for i, (n_in, n_out) in enumerate(token_trace(model, tuple(images.shape[-2:]))):
        both = ctx.masks.get(f'block.{i}')
        layer = ctx.masks.get(f'layer.{i}')
        attn = ctx.masks.get(f'attn.{i}', both)
        mlp = ctx.masks.get(f'mlp.{i}', both)
        if layer is not None:  # per sample: the whole layer ran or not
            per_sample = (layer.float() * n_in).tolist()
            attn_counts.append(per_sample)
            mlp_counts.append(sum(per_sample) / bsz)
            continue
        attn_counts.append(None if attn is None else attn.float().sum(1).tolist())
        mlp_counts.append(n_out if mlp is None else mlp.float().sum().item() / bsz)
    return vit_macs(model, tuple(images.shape[-2:]), mlp_counts, attn_counts)
