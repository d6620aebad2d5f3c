"""DyT's adapters, in the block's parallel adapter slot: they see every token.

``DyTAdapter`` is the official one: ``Linear(D, d) -> ReLU -> Dropout -> Linear(d, D)``
times ``scale``, no LayerNorm, down-projection kaiming-uniform, up-projection and both
biases zero (the adapter outputs 0 at initialisation).

``DyTMoEAdapter`` follows the paper's text (no code was released): N such experts and
a router; per image, softmax(router(mean of its tokens)) mixes the experts' *weights*,
so the tokens go through one adapter's worth of compute. Our choices, written down in
the README: the router sees the mean of all tokens (class token included) and starts at
zero (uniform routing), each expert is initialised like ``DyTAdapter``.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..vit.context import TokenContext
from ..vit.interfaces import Adapter
from ..vit.param_roles import AddsParameters
from ..vit.registry import VIT_LAYERS


def _check(bottleneck: int, num_experts: int = 1) -> None:
    if bottleneck <= 0 or num_experts <= 0:
        raise ValueError(f'DyT adapter: bottleneck ({bottleneck}) and num_experts '
                         f'({num_experts}) must be positive.')


@VIT_LAYERS.register_module()
class DyTAdapter(AddsParameters, Adapter):

    def __init__(self, dim: int, bottleneck: int = 8, scale: float = 1.0,
                 dropout: float = 0.1, **kwargs) -> None:
        super().__init__()
        _check(bottleneck)
        self.scale = scale
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.drop = nn.Dropout(dropout)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        for p in (self.down.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(p)

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext()) -> Tensor:
        return self.up(self.drop(F.relu(self.down(x)))) * self.scale

    def macs(self, num_tokens: int) -> int:
        return 2 * num_tokens * self.down.in_features * self.down.out_features


@VIT_LAYERS.register_module()
class DyTMoEAdapter(AddsParameters, Adapter):

    def __init__(self, dim: int, bottleneck: int = 8, num_experts: int = 4,
                 scale: float = 1.0, dropout: float = 0.1, **kwargs) -> None:
        super().__init__()
        _check(bottleneck, num_experts)
        self.scale = scale
        self.down_weight = nn.Parameter(torch.empty(num_experts, bottleneck, dim))
        self.down_bias = nn.Parameter(torch.zeros(num_experts, bottleneck))
        self.up_weight = nn.Parameter(torch.zeros(num_experts, dim, bottleneck))
        self.up_bias = nn.Parameter(torch.zeros(num_experts, dim))
        for w in self.down_weight:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.router = nn.Linear(dim, num_experts)
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.router.bias)
        self.drop = nn.Dropout(dropout)

    def macs(self, num_tokens: int) -> int:
        experts, bottleneck, dim = self.down_weight.shape
        mixing = 2 * experts * bottleneck * dim + dim * experts   # weights + router
        return 2 * num_tokens * dim * bottleneck + mixing

    def routing(self, x: Tensor) -> Tensor:
        """(B, N_experts) mixing weights of each image."""
        return self.router(x.mean(1)).softmax(-1)

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext()) -> Tensor:
        alpha = self.routing(x)
        down_w = torch.einsum('be,ekc->bkc', alpha, self.down_weight)   # (B, d, D)
        up_w = torch.einsum('be,eck->bck', alpha, self.up_weight)       # (B, D, d)
        h = torch.baddbmm((alpha @ self.down_bias)[:, None], x, down_w.transpose(1, 2))
        h = self.drop(F.relu(h))
        out = torch.baddbmm((alpha @ self.up_bias)[:, None], h, up_w.transpose(1, 2))
        return out * self.scale
