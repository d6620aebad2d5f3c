"""The one cost model of MMAdapt's ViTs: multiply-accumulates (MACs, the fvcore /
mmengine "FLOPs" of ToMe, PYRA, DyT, SPViT and ESTA's tables) per image.

Three layers, each written once:

- **per-op formulas** (below): patch embedding, a linear map, attention (QK^T + AV),
  MSA, an MLP of its own width, a convolution and SPViT's bottleneck conv, ToMe's
  matching, mmcv's deformable attention;
- **parts** report the MACs of one sample on the tokens they ran with these formulas
  (``Part.macs``, ``AttentionPart.macs(n, num_prefix)``, ``TokenReducer.macs``), and a
  :class:`~projects.vit.block.Block` adds up its parts for the tokens that really ran
  (``Block.macs``: gate masks, packed attention per sample, merged token counts);
- **two counts**: :func:`executed_macs` runs the model once and records what ran (a
  :class:`MacsRecord` in the forward's ``TokenContext.state``, which the backbone, the
  blocks and ESTA's stitching fill only when it is present), :func:`model_macs` walks
  the same ``Block.macs`` analytically (every token, no gating) at an input size.

Convention (the deployed network): matrix products and convolutions are counted;
norms, softmax, activations, additions, gathers and interpolation are not (they are
not multiply-adds of a weight, and torch's ``FlopCounterMode`` leaves them out too).
Low-rank updates count folded (LoRA, a stitching layer's ``B A``: ``merge_lora`` /
``folded_state_dict`` make the running model that network), and weights a part builds
once per forward (SPViT's unfolded conv kernels) are not per-image work, so neither is
counted; an unfolded LoRA's low-rank path is extra work ``FlopCounterMode`` sees.

:func:`reference_macs` is the independent count the tests compare with: torch's
``FlopCounterMode`` with attention made visible (on CPU it records nothing for
``scaled_dot_product_attention``) and mmcv's deformable attention added (it samples
with ``grid_sample``, which the counter does not see).
"""
import contextlib
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .context import TokenContext


# ------------------------------------------------------------------ per-op formulas
def linear(tokens: float, d_in: int, d_out: int) -> float:
    """A token-wise linear map ``d_in -> d_out`` on ``tokens`` rows."""
    return tokens * d_in * d_out


def conv2d(pixels: float, c_in: int, c_out: int, kernel: int) -> float:
    """A ``kernel x kernel`` convolution producing ``pixels`` output positions (padded
    borders count in full, as every counter does)."""
    return pixels * c_in * c_out * kernel * kernel


def patch_embed(num_patches: int, in_channels: int, patch_size: int, dim: int) -> float:
    """The patch embedding: one ``patch_size`` convolution per patch."""
    return conv2d(num_patches, in_channels, dim, patch_size)


def attention(queries: float, keys: int, dim: int) -> float:
    """QK^T and AV of ``queries`` over ``keys`` tokens, all heads (``dim`` channels)."""
    return 2 * queries * keys * dim


def msa(num_tokens: int, dim: int) -> float:
    """Multi-head self-attention: q/k/v, QK^T + AV, output projection."""
    return linear(num_tokens, dim, 3 * dim) + attention(num_tokens, num_tokens, dim) + \
        linear(num_tokens, dim, dim)


def mlp(num_tokens: float, dim: int, hidden: int) -> float:
    """A two-layer MLP ``dim -> hidden -> dim`` (its own hidden width)."""
    return linear(num_tokens, dim, hidden) + linear(num_tokens, hidden, dim)


def bottleneck_conv(num_patches: int, dim: int, hidden: int, kernel: int) -> float:
    """SPViT's conv op on the patch grid: ``kernel`` conv ``dim -> hidden``, then a 1x1
    conv back to ``dim``."""
    return conv2d(num_patches, dim, hidden, kernel) + conv2d(num_patches, hidden, dim, 1)


def matching(num_tokens: int, metric_dims: int) -> float:
    """ToMe's bipartite matching: similarities of the even (A) and odd (B) tokens."""
    return ((num_tokens + 1) // 2) * (num_tokens // 2) * metric_dims


def deformable_attention(num_queries: float, dim: int, num_levels: int,
                         num_points: int) -> float:
    """The sampling core of multi-scale deformable attention (its linear maps are
    ordinary linears): per query, level, point and channel a bilinear interpolation (4)
    and the attention-weighted sum (1), as Deformable DETR's complexity analysis."""
    return 5 * num_queries * num_levels * num_points * dim


# ------------------------------------------------------------------- recording
class MacsRecord(NamedTuple):
    """Per-forward entry of ``TokenContext.state``: the MACs per image run so far (each
    step adds its batch mean). Present only in :func:`executed_macs`' forward."""
    macs: float = 0.0


def record(ctx: TokenContext, macs: Callable[[], float]) -> TokenContext:
    """``ctx`` with ``macs()`` added to its record; unchanged (and ``macs`` not
    evaluated) when this forward records nothing."""
    entry = ctx.get(MacsRecord)
    if entry is None:
        return ctx
    return ctx.with_state(MacsRecord(entry.macs + float(macs())))


# ---------------------------------------------------------------- public counts
@torch.no_grad()
def executed_macs(backbone: nn.Module, images: Tensor, inputs: Sequence[Any] = ()) -> float:
    """MACs per image of what ``backbone`` really ran on ``images`` in eval mode:
    gate masks (per sample for attention's quadratic term), merged token counts, the
    stitch path. ``inputs``: the forward's typed entries, e.g. ESTA's ``(Stitch(3),)``
    (a ``StitchedViT`` otherwise runs its current stitch)."""
    _check_counts(backbone, 'forward_with_context')
    was_training = backbone.training
    backbone.eval()
    try:
        _, ctx = backbone.forward_with_context(images, inputs=(*inputs, MacsRecord()))
    finally:
        backbone.train(was_training)
    return ctx.get(MacsRecord).macs


def model_macs(backbone: nn.Module, img_hw: Sequence[int],
               inputs: Sequence[Any] = ()) -> float:
    """MACs per image of ``backbone`` at ``img_hw`` without running it: every token
    through every part (no gating), merged token counts from the mergers' schedules;
    ``inputs`` as in :func:`executed_macs`. The backbone walks its own structure
    (``ComposableViT.model_macs``, ``StitchedViT.model_macs``) with ``Block.macs``."""
    if len(img_hw) != 2:
        raise ValueError(f'img_hw must be (height, width), got {tuple(img_hw)}.')
    _check_counts(backbone, 'model_macs')
    return float(backbone.model_macs((int(img_hw[0]), int(img_hw[1])), inputs))


def _check_counts(backbone: nn.Module, method: str) -> None:
    if not callable(getattr(backbone, method, None)):
        raise TypeError(f'{type(backbone).__name__} is not a ViT of MMAdapt (it has no '
                        f'{method}): count it with reference_macs (torch\'s '
                        'FlopCounterMode), or pass its ComposableViT / StitchedViT.')


# ------------------------------------------------------------- reference count
def _matmul_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None,
                      dropout_p: float = 0.0, is_causal: bool = False,
                      scale: Optional[float] = None, **kwargs) -> Tensor:
    if is_causal or kwargs.get('enable_gqa'):
        raise NotImplementedError('explicit_attention: causal / grouped-query attention '
                                  'is not used by MMAdapt models and not written here.')
    logits = (q * (q.shape[-1] ** -0.5 if scale is None else scale)) @ k.transpose(-2, -1)
    if attn_mask is not None:
        logits = logits.masked_fill(~attn_mask, float('-inf')) \
            if attn_mask.dtype == torch.bool else logits + attn_mask
    weights = F.dropout(logits.softmax(-1), dropout_p) if dropout_p else logits.softmax(-1)
    return weights @ v


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    """Inside, ``F.scaled_dot_product_attention`` is ``softmax(q k^T s + mask) v`` with
    explicit matmuls (same result up to rounding), so torch's ``FlopCounterMode`` sees
    QK^T and AV; it records no MACs for the fused CPU kernel. For counting only (it
    swaps a global, so one thread at a time)."""
    fused = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _matmul_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = fused


def _deformable_hooks(model: nn.Module, total: list) -> list:
    """Forward hooks adding the sampling core of every mmcv deformable attention."""
    try:
        from mmcv.ops import MultiScaleDeformableAttention
    except ImportError:  # pragma: no cover - mmcv without ops has none to count
        return []

    def hook(module, args, kwargs, out):
        query = args[0] if args else kwargs['query']
        bsz, num_queries = query.shape[:2] if module.batch_first else query.shape[1::-1]
        total[0] += deformable_attention(bsz * num_queries, module.embed_dims,
                                         module.num_levels, module.num_points)
    return [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
            if isinstance(m, MultiScaleDeformableAttention)]


@torch.no_grad()
def reference_macs(fn: Callable[[Tensor], Any], images: Tensor,
                   modules: Optional[nn.Module] = None) -> float:
    """Independent count per image of ``fn(images)``: ``FlopCounterMode`` (FLOPs / 2)
    inside :func:`explicit_attention`, plus the deformable-attention sampling of the
    mmcv modules in ``modules`` (hooked; the counter cannot see ``grid_sample``)."""
    from torch.utils.flop_counter import FlopCounterMode
    unseen = [0.0]
    handles = _deformable_hooks(modules, unseen) if modules is not None else []
    try:
        with explicit_attention(), FlopCounterMode(display=False) as counter:
            fn(images)
    finally:
        for handle in handles:
            handle.remove()
    return (counter.get_total_flops() / 2 + unseen[0]) / images.shape[0]

