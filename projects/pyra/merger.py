"""Token-reduction steps for the merger slot of a
:class:`~projects.core.transformer.Block` (between attention and MLP).

- :class:`TokenMerger`: ToMe's bipartite matching, optionally with PYRA's modulation.
- :class:`TokenDropper`: drops the same number of tokens without matching. It is not a
  method but the physical limit of merging -- what a merger would cost if matching,
  size tracking and proportional attention were free -- used as a speed baseline.

Both read how many pairs to remove from ``ctx.num_merge`` (the backbone's per-layer,
per-input-size schedule), so one module serves every input size.
"""
from typing import Optional, Tuple

from torch import Tensor, nn

from ..core.context import TokenContext
from ..core.registry import VIT_LAYERS, LayerCfg, build_layer
from .token_merge import bipartite_soft_matching, max_merge, merge_weighted


@VIT_LAYERS.register_module()
class TokenMerger(nn.Module):
    """ToMe merging (size-weighted average, size and assignment tracking); with a
    ``modulation`` (e.g. ``dict(type='PYRAModulation', num_merge=r)``) it is PYRA."""

    def __init__(self, dim: Optional[int] = None, modulation: LayerCfg = None) -> None:
        super().__init__()
        self.modulation = build_layer(modulation, embed_dims=dim)  # None = plain ToMe

    def needs_metric(self, ctx: TokenContext) -> bool:
        return ctx.num_merge > 0

    def forward(self, x: Tensor, metric: Optional[Tensor],
                ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        if ctx.num_merge <= 0:
            return x, ctx
        matching = bipartite_soft_matching(metric, ctx.num_merge, ctx.num_prefix > 0)
        if matching is None:
            return x, ctx
        x, size = merge_weighted(matching, x, ctx.size, self.modulation)
        assignment = matching.compose(ctx.assignment) if ctx.trace else None
        return x, ctx._replace(size=size, assignment=assignment, on_grid=False)


@VIT_LAYERS.register_module()
class TokenDropper(nn.Module):
    """Keep the first N - r tokens (the class token among them), capped like ToMe.

    No matching, no sizes (so no proportional attention), no unmerging: a lower bound on
    the cost of any merger with the same schedule, for ``benchmark.py --drop-baseline``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__()

    def needs_metric(self, ctx: TokenContext) -> bool:
        return False

    def forward(self, x: Tensor, metric: Optional[Tensor],
                ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        r = min(ctx.num_merge, max_merge(x.shape[1], ctx.num_prefix > 0))
        if r <= 0:
            return x, ctx
        if ctx.trace:
            raise RuntimeError("merge_mode='drop' is a speed baseline and cannot unmerge "
                               "dense outputs; use out_type='cls_token' or 'avg_featmap'.")
        # materialised, as any reduction's output is: later layers then run on a compact
        # tensor (a strided view slows every one of them down)
        return x[:, :x.shape[1] - r].contiguous(), ctx._replace(on_grid=False)
