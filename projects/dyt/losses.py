"""DyT's token-rate loss: (mean activation - r)^2, over batch, layers and patch tokens,
with the straight-through masks (the official ``AdaLoss``), weight 2 by default.

With token merging in front (DyT + ToMe) the layers see different token counts; the mean
is over every (layer, token) decision, i.e. the sum of active tokens over the sum of
tokens.
"""
from typing import Dict

from torch import Tensor

from ..vit.context import TokenContext
from ..vit.interfaces import AuxLossTerm
from ..vit.registry import VIT_LAYERS


@VIT_LAYERS.register_module()
class TokenRateLoss(AuxLossTerm):

    def __init__(self, target: float = 0.5, weight: float = 2.0,
                 name: str = 'loss_token') -> None:
        super().__init__()
        if not 0 < target <= 1:
            raise ValueError(f'TokenRateLoss: the target activation rate r must be in '
                             f'(0, 1], got {target}.')
        if 'loss' not in name:
            raise ValueError(f"TokenRateLoss: name {name!r} must contain 'loss' to be "
                             'optimised.')
        self.target, self.weight, self.name = target, weight, name

    def forward(self, ctx: TokenContext, backbone=None) -> Dict[str, Tensor]:
        active, tokens = ctx.aux_by_layer('dyt_active'), ctx.aux_by_layer('dyt_tokens')
        if not active:  # the complete-model pass, or no dispatcher
            return {}
        rate = sum(active.values()) / sum(tokens.values())
        return {self.name: self.weight * (rate - self.target) ** 2,
                'token_rate': rate.detach()}
