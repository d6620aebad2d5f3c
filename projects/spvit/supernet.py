"""The search-time parts of SPViT: the unified MSA / conv layer (attention slot) and
the FFN with one gate per hidden unit (MLP slot).

Both take over the pretrained weights under the plain block's names (``attn.qkv``,
``attn.proj``, ``mlp.fc1``, ``mlp.fc2``), so dense checkpoints load; everything they
add (z, the gate logits theta, the BNs) is declared new (``AddsParameters``).
Gates are sampled inside each forward and never stored on the module; the FLOPs loss
(``flops.py``) reads the gate logits, not the samples, as the official code does.
"""
from typing import Iterable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..vit.context import TokenContext
from ..vit.param_roles import AddsParameters
from ..vit.registry import VIT_LAYERS
from ..vit.block import Attention, Mlp
from .arch import DEFAULT_SKIP_OP, OPS, op_macs
from .bconv import conv1x1_weights, gather_conv3x3, mix_heads, split_heads
from .gates import op_of, ordered_attention_gates, sample_gates

SKIP_OPS = (DEFAULT_SKIP_OP, 'ln')


def check_skip_op(skip_op: str, who: str) -> None:
    if skip_op not in SKIP_OPS:
        raise ValueError(f'{who}: skip_op must be one of {SKIP_OPS} ("zero": the block '
                         'adds nothing, as the thesis and the official search; "ln": it '
                         f'adds LN(x), as the official fine-tune model), got {skip_op!r}.')


def _init_theta(size: int, mean: float, std: float) -> Tensor:
    """Gate logits: all ``mean`` (official, 1.5) or spread by ``std``. With identical
    logits every FFN unit of a layer gets the same FLOPs gradient, so units cross the
    boundary together; a short search (the embedded run, the tests) spreads them."""
    if std < 0:
        raise ValueError(f'theta_init_std must be >= 0, got {std}.')
    theta = torch.full((size,), float(mean))
    return theta + std * torch.randn(size) if std else theta


def new_names(module: nn.Module, children: Iterable[str], params: Iterable[str]):
    """Parameter and buffer names of ``children`` plus ``params`` (a checkpoint loader
    compares the whole state dict, BN running statistics included)."""
    names = list(params)
    for child in children:
        names += [f'{child}.{n}' for n in getattr(module, child).state_dict()]
    return names


@VIT_LAYERS.register_module()
class SPViTAttention(AddsParameters, Attention):
    """Unified MSA / conv layer: ``forward(x, ctx) -> (out, None)``.

    out = g3 MSA + g2 (1 - g3) conv3x3 + g1 (1 - g2)(1 - g3) conv1x1 (+ (1 - g1) x with
    ``skip_op='ln'``), g = cumprod of three sampled gates. In eval the hard op alone
    runs. The class token (prefix tokens) passes the conv paths unchanged.

    Args:
        alpha: softmax temperature of z (official DeiT 1e-2, Swin 1e2).
        theta_init: initial gate logit (official 1.5, sigma = 0.82).
        tau: Gumbel-sigmoid temperature (official 1).
        skip_op: what "all gates off" adds: 'zero' (official search, thesis) or 'ln'.
        damp: the official gradient damping of the cheaper gates.
    """

    # its conv paths need the full patch grid: no merging after it, no attention gate
    provides_metric = False
    masks_keys = False
    packs = False

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, alpha: float = 1e-2,
                 theta_init: float = 1.5, tau: float = 1.0, skip_op: str = DEFAULT_SKIP_OP,
                 damp: bool = True, theta_init_std: float = 0.0, **kwargs) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                         proj_drop=proj_drop, lora_cfg=None, prop_attn=False)
        check_skip_op(skip_op, 'SPViTAttention')
        if not qkv_bias:
            raise ValueError('SPViTAttention needs qkv_bias=True (the conv bias is built '
                             'from the value bias).')
        self.alpha, self.tau, self.skip_op, self.damp = alpha, tau, skip_op, damp
        self.head_dim = dim // num_heads
        self.z = nn.Parameter(torch.ones(num_heads, 9))
        self.theta = nn.Parameter(_init_theta(3, theta_init, theta_init_std))
        self.bn1x1 = nn.BatchNorm2d(self.head_dim)
        self.bn3x3 = nn.BatchNorm2d(self.head_dim)

    def new_parameter_names(self):
        return new_names(self, ['bn1x1', 'bn3x3'], ['z', 'theta'])

    def trainable_parameter_names(self):
        return ['z', 'theta', 'bn1x1.weight', 'bn1x1.bias', 'bn3x3.weight', 'bn3x3.bias']

    # ----------------------------------------------------------------- paths
    def mixtures(self) -> Tuple[Tensor, Tensor, Tensor]:
        wv, bv, wp = split_heads(self.qkv.weight, self.qkv.bias, self.proj.weight,
                                 self.num_heads)
        return mix_heads(wv, bv, wp, self.z, self.alpha)

    def conv1x1(self, patches: Tensor, mix) -> Tensor:
        kernel, bias, proj = conv1x1_weights(*mix)
        hidden = F.relu(self.bn1x1(F.conv2d(patches, kernel, bias)))
        return torch.einsum('bohw,do->bdhw', hidden, proj)

    def conv3x3(self, patches: Tensor, mix) -> Tensor:
        v, c, p = mix
        hidden = F.relu(self.bn3x3(gather_conv3x3(patches, v, c)))
        return torch.einsum('bohw,do->bdhw', hidden, p.sum(0))

    def conv_out(self, x: Tensor, ctx: TokenContext, path) -> Tensor:
        prefix, patches = ctx.to_grid(x, 'SPViTAttention')
        out = path(patches, self.mixtures()) + self.proj.bias[None, :, None, None]
        out = self.proj_drop(out.flatten(2).transpose(1, 2))
        return torch.cat([prefix, out], 1)

    def msa(self, x: Tensor, ctx: TokenContext) -> Tensor:
        return super().forward(x, ctx)[0]

    # ------------------------------------------------------------------ cost
    def op_macs(self, op: str, num_tokens: float, num_prefix: int = 1) -> float:
        """Multiply-adds per image of one of the ops this layer chooses between."""
        return op_macs(op, self.proj.in_features, self.num_heads, num_tokens, num_prefix)

    def macs(self, num_tokens: float, num_prefix: int = 1) -> float:
        """The op eval runs (its gates' hard decision). Training runs all three paths;
        the FLOPs loss weighs them by the gates (``flops.supernet_macs``)."""
        return self.op_macs(OPS[op_of(self.theta)], num_tokens, num_prefix)

    # --------------------------------------------------------------- forward
    def gates(self) -> Tensor:
        return ordered_attention_gates(self.theta, self.tau, self.training, self.damp)

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext(),
                attend: Optional[Tensor] = None,
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        g = self.gates()
        skip = x if self.skip_op == 'ln' else torch.zeros_like(x)
        if not self.training:
            op = int(g.sum())
            paths = [lambda: skip, lambda: self.conv_out(x, ctx, self.conv1x1),
                     lambda: self.conv_out(x, ctx, self.conv3x3), lambda: self.msa(x, ctx)]
            return paths[op](), None
        g1, g2, g3 = g.to(x.dtype).unbind(0)
        out = g3 * self.msa(x, ctx) + g2 * (1 - g3) * self.conv_out(x, ctx, self.conv3x3) \
            + g1 * (1 - g2) * (1 - g3) * self.conv_out(x, ctx, self.conv1x1)
        if self.skip_op == 'ln':
            out = out + (1 - g1) * x
        return out, None


@VIT_LAYERS.register_module()
class SPViTGatedMlp(AddsParameters, Mlp):
    """FFN with one gate per hidden unit on the post-GELU activations:
    ``forward(x) -> x`` (the MLP slot); the gates are sampled per forward in training
    and sigma(theta) > 0.5 in eval."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, theta_init: float = 1.5,
                 tau: float = 1.0, theta_init_std: float = 0.0, **kwargs) -> None:
        super().__init__(dim, hidden, drop)
        self.tau = tau
        self.theta = nn.Parameter(_init_theta(hidden, theta_init, theta_init_std))

    def new_parameter_names(self):
        return ['theta']

    def forward(self, x: Tensor) -> Tensor:
        gates = sample_gates(self.theta, self.tau, self.training).to(x.dtype)
        hidden = self.drop(self.act(self.fc1(x)) * gates)
        return self.drop(self.fc2(hidden))
