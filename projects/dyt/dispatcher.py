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


SKIPS = {'mlp': ('mlp_gate', 'mlp'), 'attn': ('attn_gate', 'attn'),
         'attn_mlp': ('attn_gate', 'block')}  # what it skips -> (block slot, mask name)


def _rate_aux(ctx: TokenContext, active: Tensor, tokens: int, ref: Tensor) -> TokenContext:
    active = active.sum() if active.dtype != torch.bool else active.sum().to(ref.dtype)
    ctx = ctx.with_aux('dyt_active', active)
    return ctx.with_aux('dyt_tokens', ref.new_tensor(float(tokens)))


@VIT_LAYERS.register_module(name='DyTDispatcher')
class TokenDispatcher(AddsParameters, nn.Module):
    """Token gate part: ``forward(x, ctx) -> (mask (B, N), ctx)``.

    ``skips`` chooses the DyT variant and the block slot it must sit in:
    ``'mlp'`` (MLP dispatch, the default and the official code's only variant; slot
    ``mlp_gate``), ``'attn'`` (attention dispatch: only active tokens enter attention;
    slot ``attn_gate``) or ``'attn_mlp'`` (attention-MLP dispatch: one decision skips
    both; slot ``attn_gate``, ``gates_mlp``).

    It reports ``dyt_active`` (active patch tokens, differentiable through the
    straight-through mask) and ``dyt_tokens`` (patch tokens) per layer in ``ctx.aux``,
    which :class:`~projects.dyt.losses.TokenRateLoss` turns into the rate loss, and the
    mask in ``ctx.masks['<mlp|attn|block>.<layer>']`` for pictures and FLOPs counting.
    """

    def __init__(self, dim: int, tau: float = 5.0, skips: str = 'mlp', **kwargs) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'DyTDispatcher: tau must be positive, got {tau}.')
        if skips not in SKIPS:
            raise ValueError(f'DyTDispatcher: unknown variant skips={skips!r}; choose one '
                             f'of {sorted(SKIPS)} (or DyTLayerDispatcher for layer '
                             'dispatch).')
        self.tau, self.skips = tau, skips
        self.slot, self.mask_name = SKIPS[skips]
        self.gates_mlp = skips == 'attn_mlp'
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
        ctx = ctx.with_mask(self.mask_name, mask)
        return mask, _rate_aux(ctx, patch, patch.numel(), x)


@VIT_LAYERS.register_module(name='DyTLayerDispatcher')
class LayerDispatcher(AddsParameters, nn.Module):
    """Layer dispatch: one decision per sample, from its class token, skips attention
    and MLP of the whole layer (the adapter still runs). Attention-gate part returning a
    (B,) mask; the rate counts a skipped layer as all its patch tokens skipped."""

    slot = 'attn_gate'
    mask_name = 'layer'
    gates_mlp = True

    def __init__(self, dim: int, tau: float = 5.0, **kwargs) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'DyTLayerDispatcher: tau must be positive, got {tau}.')
        self.tau = tau
        self.score = nn.Linear(dim, 1)
        nn.init.trunc_normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)

    def macs(self, num_tokens: int) -> int:
        return self.score.in_features  # the class token only

    def forward(self, x: Tensor, ctx: TokenContext):
        if not ctx.dispatch:
            return None, ctx
        if ctx.num_prefix < 1:
            raise ValueError('DyTLayerDispatcher decides from the class token, but this '
                             'ViT has none (with_cls_token=False); use DyTDispatcher.')
        keep = gumbel_sigmoid(self.score(x[:, 0])[..., 0], self.tau, self.training)
        ctx = ctx.with_mask(self.mask_name, keep)
        patches = x.shape[1] - ctx.num_prefix
        return keep, _rate_aux(ctx, keep * patches if keep.dtype != torch.bool
                               else keep.to(x.dtype) * patches, keep.numel() * patches, x)
