"""DyT's token dispatcher: which patch tokens run the gated sub-block.

A ``Linear(D, 1)`` scores every patch token; the class token is always active.
Training samples the mask with the straight-through Gumbel-sigmoid: the forward uses
the hard mask 1[sigma((g + G1 - G2) / tau) > 0.5], which is Bernoulli(sigma(g)) whatever
tau is, and the backward the gradient of the soft value (tau only scales it).
Evaluation uses the deterministic hard mask 1[g > 0] as a bool tensor, which makes the
block run the MLP on the active tokens only (packed across the batch).
"""
import math

import torch
from torch import Tensor, nn

from ..vit.context import TokenContext
from ..vit.gumbel import gumbel_sigmoid
from ..vit.interfaces import GateDecision, TokenGate
from ..vit.param_roles import AddsParameters
from ..vit.registry import VIT_LAYERS

#: what a variant skips -> (block slot, gates the MLP too)
SKIPS = {'mlp': ('mlp_gate', False), 'attn': ('attn_gate', False),
         'attn_mlp': ('attn_gate', True)}


def _rate_aux(ctx: TokenContext, active: Tensor, tokens: int, ref: Tensor) -> TokenContext:
    active = active.sum() if active.dtype != torch.bool else active.sum().to(ref.dtype)
    ctx = ctx.with_aux('dyt_active', active)
    return ctx.with_aux('dyt_tokens', ref.new_tensor(float(tokens)))


def _score(dim: int, bias_init: float) -> nn.Linear:
    """The dispatcher's ``Linear(D, 1)``: trunc-normal(0.02) weight (the official
    model-wide init) and the bias ``bias_init`` (official: 0)."""
    if not math.isfinite(bias_init):
        raise ValueError(f'DyT dispatcher: bias_init must be a finite number, got '
                         f'{bias_init}.')
    score = nn.Linear(dim, 1)
    nn.init.trunc_normal_(score.weight, std=0.02)
    nn.init.constant_(score.bias, bias_init)
    return score


def _decision(mask: Tensor) -> GateDecision:
    """Eval masks are bool (exact, so the block runs the active tokens alone); training
    masks are straight-through floats."""
    return GateDecision(mask, hard=mask.dtype == torch.bool)


@VIT_LAYERS.register_module(name='DyTDispatcher')
class TokenDispatcher(AddsParameters, TokenGate):
    """Token gate part: ``forward(x, ctx) -> (GateDecision (B, N), ctx)``.

    ``skips`` chooses the DyT variant and the block slot it must sit in:
    ``'mlp'`` (MLP dispatch, the default and the official code's only variant; slot
    ``mlp_gate``), ``'attn'`` (attention dispatch: only active tokens enter attention;
    slot ``attn_gate``) or ``'attn_mlp'`` (attention-MLP dispatch: one decision skips
    both; slot ``attn_gate``, ``gates_mlp``).

    It reports ``dyt_active`` (active patch tokens, differentiable through the
    straight-through mask) and ``dyt_tokens`` (patch tokens) per layer in ``ctx.aux``,
    which :class:`~projects.dyt.losses.TokenRateLoss` turns into the rate loss; the block
    records the mask in ``ctx.masks['<mlp|attn|block>.<layer>']`` for pictures and
    FLOPs counting. The complete-model pass (``ctx.gated=False``) does not consult it.

    ``bias_init`` is the score's initial bias (0 in the official code: sigma(g) ~ 0.5,
    coin-flip masks from the first step). A positive value starts training from
    (nearly) the complete model, e.g. 3.0: about 95 % of the tokens active (our
    short-budget recipe, see the README).

    ``noise`` scales the Gumbel noise of the training masks (1: the official sampling;
    0: the eval mask ``g > 0`` with the straight-through gradient). It is a
    hyper-parameter that :class:`~projects.dyt.hooks.DyTRateScheduleHook` (``denoise``)
    anneals from the iteration counter, like ``TokenRateLoss.target``.
    """

    def __init__(self, dim: int, tau: float = 5.0, skips: str = 'mlp',
                 bias_init: float = 0.0, **kwargs) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'DyTDispatcher: tau must be positive, got {tau}.')
        if skips not in SKIPS:
            raise ValueError(f'DyTDispatcher: unknown variant skips={skips!r}; choose one '
                             f'of {sorted(SKIPS)} (or DyTLayerDispatcher for layer '
                             'dispatch).')
        self.tau, self.skips, self.noise = tau, skips, 1.0
        self.slot, self.gates_mlp = SKIPS[skips]
        self.score = _score(dim, bias_init)

    def macs(self, num_tokens: int) -> int:
        return num_tokens * self.score.in_features  # upper bound: the class token is not scored

    def forward(self, x: Tensor, ctx: TokenContext):
        prefix = ctx.num_prefix
        patch = gumbel_sigmoid(self.score(x[:, prefix:])[..., 0], self.tau, self.training,
                               self.noise)
        keep = torch.ones(x.shape[0], prefix, dtype=patch.dtype, device=x.device)
        mask = torch.cat([keep, patch], 1)
        return _decision(mask), _rate_aux(ctx, patch, patch.numel(), x)


@VIT_LAYERS.register_module(name='DyTLayerDispatcher')
class LayerDispatcher(AddsParameters, TokenGate):
    """Layer dispatch: one decision per sample, from its class token, skips attention
    and MLP of the whole layer (the adapter still runs). Attention-gate part returning a
    (B,) mask; the rate counts a skipped layer as all its patch tokens skipped."""

    slot = 'attn_gate'
    gates_mlp = True
    per_sample = True

    def __init__(self, dim: int, tau: float = 5.0, bias_init: float = 0.0,
                 **kwargs) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'DyTLayerDispatcher: tau must be positive, got {tau}.')
        self.tau, self.noise = tau, 1.0
        self.score = _score(dim, bias_init)

    def macs(self, num_tokens: int) -> int:
        return self.score.in_features  # the class token only

    def forward(self, x: Tensor, ctx: TokenContext):
        if ctx.num_prefix < 1:
            raise ValueError('DyTLayerDispatcher decides from the class token, but this '
                             'ViT has none (with_cls_token=False); use DyTDispatcher.')
        keep = gumbel_sigmoid(self.score(x[:, 0])[..., 0], self.tau, self.training, self.noise)
        patches = x.shape[1] - ctx.num_prefix
        return _decision(keep), _rate_aux(ctx, keep * patches if keep.dtype != torch.bool
                               else keep.to(x.dtype) * patches, keep.numel() * patches, x)
