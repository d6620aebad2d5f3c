"""Conditional positional encodings K_p for the features the decoder attends to.

DFPQ aggregates K_p with the cross-attention weights (Eq. 5.2), so the kind of K_p
matters (thesis Table 5.3): a sinusoidal K_p collapses DFPQ to an anchor-point-like
prior, a conditional one (PEG: a depthwise 3x3 conv of the features) carries
neighbourhood information. The head offers both; the sine option is mmdet's own
``SinePositionalEncoding`` (what Mask2Former uses), this module is the PEG one.
"""
from torch import Tensor, nn


class ConditionalPositionalEncoding(nn.Module):
    """One depthwise 3x3 conv (with bias) per feature level; output (B, HW, C)."""

    def __init__(self, embed_dims: int, num_levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
            for _ in range(num_levels))

    def forward(self, feat: Tensor, level: int) -> Tensor:
        return self.convs[level](feat).flatten(2).transpose(1, 2)
