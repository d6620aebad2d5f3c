"""Token-reduction steps for the merger slot of a
:class:`~projects.vit.block.Block` (between attention and MLP).

- :class:`TokenMerger`: ToMe's bipartite matching, optionally with PYRA's modulation.
- :class:`TokenDropper`: drops the same number of tokens without matching. It is not a
  method but the physical limit of merging -- what a merger would cost if matching,
  size tracking and proportional attention were free -- used as a speed baseline.

Each step owns its layer's share of the schedule: ``num_merge`` pairs for the
``num_tokens`` tokens that reach it at the build size (``PYRAViT`` fills both in). For
another input size it merges the same fraction of the tokens that actually reach it,
rounded and capped by ToMe's half-of-tokens limit (``schedules.layer_merge``), so one module
serves every input size and nothing about the schedule rides in the context.
"""
from typing import Optional, Tuple

from torch import Tensor

from ..vit import cost
from ..vit.context import TokenContext, TokenGroups
from ..vit.interfaces import TokenReducer
from ..vit.registry import VIT_LAYERS, LayerCfg, build_layer
from .schedules import layer_merge
from .token_merge import bipartite_soft_matching, max_merge, merge_weighted


class _ScheduledStep(TokenReducer):

    def __init__(self, num_merge: int = 0, num_tokens: int = 0) -> None:
        super().__init__()
        self.num_merge, self.num_tokens = int(num_merge), int(num_tokens)

    def merges_for(self, tokens_now: int, class_token: bool) -> int:
        """Pairs this layer merges when ``tokens_now`` tokens reach it."""
        return layer_merge(self.num_merge, self.num_tokens, tokens_now, class_token)

    def tokens_after(self, num_tokens: int, num_prefix: int = 1) -> int:
        """What is left of ``num_tokens`` (the merges, capped by ToMe's limit)."""
        class_token = num_prefix > 0
        return num_tokens - max(min(self.merges_for(num_tokens, class_token),
                                    max_merge(num_tokens, class_token)), 0)

    def merges_now(self, x: Tensor, ctx: TokenContext) -> int:
        # int(): a traced size is a tensor; the count is fixed for the traced shape
        return self.merges_for(int(x.shape[1]), ctx.num_prefix > 0)

    def extra_repr(self) -> str:
        return f'num_merge={self.num_merge}, num_tokens={self.num_tokens}'


@VIT_LAYERS.register_module()
class TokenMerger(_ScheduledStep):
    """ToMe merging (size-weighted average, size and assignment tracking); with a
    ``modulation`` (e.g. ``dict(type='PYRAModulation', num_merge=r)``) it is PYRA."""

    def __init__(self, dim: Optional[int] = None, num_merge: int = 0, num_tokens: int = 0,
                 modulation: LayerCfg = None) -> None:
        super().__init__(num_merge, num_tokens)
        self.dim = dim
        self.modulation = build_layer(modulation, embed_dims=dim)  # None = plain ToMe

    def needs_metric(self, ctx: TokenContext) -> bool:
        return self.num_merge > 0

    def macs(self, num_tokens: float, num_prefix: int = 1,
             metric_dims: Optional[int] = None) -> float:
        """The matching on the attention's metric and PYRA's modulation of the r
        sources, when this layer merges (size-weighted averaging costs no MACs)."""
        r = num_tokens - self.tokens_after(num_tokens, num_prefix)
        if r <= 0:
            return 0.0
        if not metric_dims:
            raise ValueError('TokenMerger.macs needs the channels of the matching metric '
                             '(the attention part\'s metric_dims).')
        # PYRA: delta_D = W_r^T M_info (r -> 1 per channel), delta_r = M_info W_D^T
        pyra = 0.0 if self.modulation is None else \
            cost.linear(1, r, self.dim) + cost.linear(r, self.dim, 1)
        return cost.matching(num_tokens, metric_dims) + pyra

    def forward(self, x: Tensor, metric: Optional[Tensor],
                ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        r = self.merges_now(x, ctx)
        if r <= 0:
            return x, ctx
        matching = bipartite_soft_matching(metric, r, ctx.num_prefix > 0)
        if matching is None:
            return x, ctx
        groups = ctx.groups
        x, size = merge_weighted(matching, x, None if groups is None else groups.size,
                                 self.modulation)
        assignment = matching.compose(None if groups is None else groups.assignment) \
            if ctx.trace else None
        return x, ctx.with_groups(TokenGroups(size, assignment))


@VIT_LAYERS.register_module()
class TokenDropper(_ScheduledStep):
    """Keep the first N - r tokens (the class token among them), capped like ToMe.

    No matching, no sizes (so no proportional attention), no unmerging: a lower bound on
    the cost of any merger with the same schedule, for ``benchmark.py --drop-baseline``.
    """

    def __init__(self, num_merge: int = 0, num_tokens: int = 0, **kwargs) -> None:
        super().__init__(num_merge, num_tokens)

    def macs(self, num_tokens: float, num_prefix: int = 1,
             metric_dims: Optional[int] = None) -> float:
        return 0.0  # keeps a prefix of the tokens: no matching

    def forward(self, x: Tensor, metric: Optional[Tensor],
                ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        r = min(self.merges_now(x, ctx), max_merge(x.shape[1], ctx.num_prefix > 0))
        if r <= 0:
            return x, ctx
        if ctx.trace:
            raise RuntimeError("merge_mode='drop' is a speed baseline and cannot unmerge "
                               "dense outputs; use out_type='cls_token' or 'avg_featmap'.")
        # materialised, as any reduction's output is: later layers then run on a compact
        # tensor (a strided view slows every one of them down)
        return x[:, :x.shape[1] - r].contiguous(), ctx._replace(on_grid=False)
