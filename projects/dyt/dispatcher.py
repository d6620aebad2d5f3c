"""DyT's token dispatcher: which patch tokens run the gated sub-block.

A ``Linear(D, 1)`` scores every patch token; the class token is always active.
Training samples the mask with the straight-through Gumbel-sigmoid: the forward uses
the hard mask 1[sigma((g + G1 - G2) / tau) > 0.5], which is Bernoulli(sigma(g)) whatever
tau is, and the backward the gradient of the soft value (tau only scales it).
Evaluation uses the deterministic hard mask 1[g > 0] as a bool tensor, which makes the
block run the MLP on the active tokens only (packed across the batch).
"""
import torch
from torch import Tensor, nn

from ..core.context import TokenContext
from ..core.param_roles import AddsParameters
from ..core.registry import VIT_LAYERS


def gumbel_sigmoid(logits: Tensor, tau: float, training: bool) -> Tensor:
    """Straight-through Gumbel-sigmoid mask (float) in training, ``logits > 0`` (bool)
    otherwise."""
    if not training:
        return logits > 0
    g1 = -torch.empty_like(logits).exponential_().log()
    g2 = -torch.empty_like(logits).exponential_().log()
    soft = torch.sigmoid((logits + g1 - g2) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return hard - soft.detach() + soft


@VIT_LAYERS.register_module(name='DyTDispatcher')
class TokenDispatcher(AddsParameters, nn.Module):
    """MLP-gate part: ``forward(x, ctx) -> (mask (B, N), ctx)``.

    It reports ``dyt_active`` (active patch tokens, differentiable through the
    straight-through mask) and ``dyt_tokens`` (patch tokens) per layer in ``ctx.aux``,
    which :class:`~projects.dyt.losses.TokenRateLoss` turns into the rate loss, and the
    mask in ``ctx.masks['mlp.<layer>']`` for pictures and FLOPs counting.
    """

    def __init__(self, dim: int, tau: float = 5.0, **kwargs) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'DyTDispatcher: tau must be positive, got {tau}.')
        self.tau = tau
        self.score = nn.Linear(dim, 1)
        nn.init.trunc_normal_(self.score.weight, std=0.02)  # the official model-wide init
        nn.init.zeros_(self.score.bias)

    def macs(self, num_tokens: int) -> int:
        return num_tokens * self.score.in_features  # upper bound: the class token is not scored

    def forward(self, x: Tensor, ctx: TokenContext):
        if not ctx.dispatch:
            return None, ctx
        prefix = ctx.num_prefix
        patch = gumbel_sigmoid(self.score(x[:, prefix:])[..., 0], self.tau, self.training)
        keep = torch.ones(x.shape[0], prefix, dtype=patch.dtype, device=x.device)
        mask = torch.cat([keep, patch], 1)
        active = patch.sum() if patch.dtype != torch.bool else patch.sum().to(x.dtype)
        ctx = ctx.with_mask('mlp', mask).with_aux('dyt_active', active)
        return mask, ctx.with_aux('dyt_tokens', x.new_tensor(float(patch.numel())))
