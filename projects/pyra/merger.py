"""The token-merging step a :class:`~projects.core.transformer.Block` runs between
attention and MLP: ToMe's bipartite matching, optionally with PYRA modulation."""
from typing import Optional, Tuple

from torch import Tensor, nn

from ..core.transformer import TokenState
from .pyra_modulation import PYRAModulation
from .token_merge import bipartite_soft_matching, merge_weighted


class TokenMerger(nn.Module):

    def __init__(self, class_token: bool = True,
                 modulation: Optional[PYRAModulation] = None) -> None:
        super().__init__()
        self.class_token = class_token
        self.modulation = modulation  # None = plain ToMe

    def forward(self, x: Tensor, metric: Tensor, state: TokenState,
                r: int) -> Tuple[Tensor, TokenState]:
        matching = bipartite_soft_matching(metric, r, self.class_token)
        if matching is None:
            return x, state
        x, size = merge_weighted(matching, x, state.size, self.modulation)
        assignment = matching.compose(state.assignment) if state.trace else None
        return x, TokenState(size, assignment, state.trace)
