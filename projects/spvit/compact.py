"""The parts of a compact (searched) SPViT model, one per attention op.

- ``SPViTSkip``: no attention; adds nothing (``skip_op='zero'``, default: the thesis
  and the search) or LN(x) (``'ln'``, the official fine-tune model).
- ``SPViTConv``: a bottleneck conv d -> d_h -> d with kernel 1 or 3. Unfolded, it keeps
  the value rows ``v``, the projection ``proj`` and z, and builds its kernel from them
  every forward, as the official fine-tuning does (z keeps training). Folded
  (``folded=True``, after :func:`~projects.spvit.convert.fold_state_dict`), it is
  ``conv -> bn -> ReLU -> pw`` with explicit weights, for deployment.
- MSA: the plain ``Attention`` part; FFN: the plain ``Mlp`` with ``hidden=k``.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..vit.context import TokenContext
from ..vit.interfaces import AttentionPart
from ..vit.param_roles import AddsParameters
from ..vit.registry import VIT_LAYERS
from .arch import DEFAULT_SKIP_OP, op_macs
from .bconv import conv1x1_weights, conv3x3_weights, mix_heads
from .supernet import check_skip_op, new_names


@VIT_LAYERS.register_module()
class SPViTSkip(AttentionPart):
    """The skip op: ``forward(x, ctx) -> (LN(x) or 0, None)``."""

    def __init__(self, dim: int = 0, skip_op: str = DEFAULT_SKIP_OP, **kwargs) -> None:
        super().__init__()
        check_skip_op(skip_op, 'SPViTSkip')
        self.skip_op = skip_op

    def macs(self, num_tokens: float, num_prefix: int = 1) -> float:
        return 0.0

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext(),
                attend: Optional[Tensor] = None,
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        return (x if self.skip_op == 'ln' else torch.zeros_like(x)), None


@VIT_LAYERS.register_module()
class SPViTConv(AddsParameters, AttentionPart):
    """Bottleneck conv op on the patch grid (class token passed through unchanged); it
    provides no merging metric (merging would break the grid)."""

    def __init__(self, dim: int, num_heads: int, kernel: int = 3, folded: bool = False,
                 alpha: float = 1e-2, proj_drop: float = 0.0, **kwargs) -> None:
        super().__init__()
        if kernel not in (1, 3):
            raise ValueError(f'SPViTConv: kernel must be 1 or 3, got {kernel}.')
        self.kernel, self.folded, self.alpha = kernel, folded, alpha
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        if folded:
            self.conv = nn.Conv2d(dim, self.head_dim, kernel, padding=kernel // 2)
            self.pw = nn.Conv2d(self.head_dim, dim, 1)
        else:
            self.v = nn.Linear(dim, dim)
            self.proj = nn.Linear(dim, dim)
            self.z = nn.Parameter(torch.ones(num_heads, 9))
        self.bn = nn.BatchNorm2d(self.head_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def new_parameter_names(self):
        # exported checkpoints carry every tensor; only z and BN are SPViT's own
        return [] if self.folded else new_names(self, ['bn'], ['z'])

    def trainable_parameter_names(self):
        # an op that replaced an MSA has no pretrained function to keep (v and proj only
        # initialise it), so under a frozen backbone (the LoRA fine-tune) all of it trains
        return [name for name, _ in self.named_parameters()]

    def macs(self, num_tokens: float, num_prefix: int = 1) -> float:
        """The folded convs on the patches (unfolded, the kernel is built once per
        forward, which is not per-image work); the class token passes unchanged."""
        return op_macs(f'conv{self.kernel}x{self.kernel}', self.dim, self.num_heads,
                       num_tokens, num_prefix)

    def weights(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(kernel, conv bias, projection (d, d_h), projection bias)."""
        if self.folded:
            return self.conv.weight, self.conv.bias, self.pw.weight[:, :, 0, 0], self.pw.bias
        h, dh, d = self.num_heads, self.head_dim, self.v.in_features
        wv = self.v.weight.reshape(h, dh, d)
        bv = self.v.bias.reshape(h, dh)
        wp = self.proj.weight.reshape(d, h, dh).permute(1, 0, 2)
        mix = mix_heads(wv, bv, wp, self.z, self.alpha)
        build = conv3x3_weights if self.kernel == 3 else conv1x1_weights
        return (*build(*mix), self.proj.bias)

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext(),
                attend: Optional[Tensor] = None,
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        prefix, patches = ctx.to_grid(x, 'SPViTConv')
        kernel, bias, proj, proj_bias = self.weights()
        hidden = F.relu(self.bn(F.conv2d(patches, kernel, bias, padding=self.kernel // 2)))
        out = F.conv2d(hidden, proj[..., None, None], proj_bias)
        return torch.cat([prefix, self.proj_drop(out.flatten(2).transpose(1, 2))], 1), None
