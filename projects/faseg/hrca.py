"""Token selection for high-resolution cross-attention (thesis Eq. 5.3).

The 1/4-scale map is too large to attend to (4096 tokens at 512^2). HRCA keeps only
the places the low-resolution (1/32) cross-attention found informative: the
attention of all queries is summed per low-resolution pixel, the top-k pixels are
kept and mapped top-down to the 1/4 map, and the HRCA layer attends to those tokens
only, shared by all queries of an image. Its cost depends on k, not on the 1/4 map.

Two mappings, since thesis and code differ:

* ``'window'`` (official code, default): each kept 1/32 pixel becomes its s x s
  window of 1/4 pixels (s = 8 at stride ratio 8), k = floor(HW_{1/32} / omega)
  windows, so k * s^2 tokens.
* ``'bilinear'`` (thesis text): the summed map is bilinearly upsampled to the 1/4
  grid and the top k * s^2 pixels are kept, the same token budget.

At sizes where the 1/4 grid is not an exact multiple of the 1/32 grid (odd inputs),
windows have size ceil(H_hr / H_lr) and are shifted inside the map, so every index
stays in bounds (neighbouring windows may then overlap by a row or column).
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

SELECTIONS = ('window', 'bilinear')


def num_windows(lr_hw: Tuple[int, int], omega: float) -> int:
    """k = floor(HW_lr / omega), at least one, at most every low-res pixel."""
    return max(1, min(lr_hw[0] * lr_hw[1], int(lr_hw[0] * lr_hw[1] // omega)))


def window_size(lr_hw: Tuple[int, int], hr_hw: Tuple[int, int]) -> Tuple[int, int]:
    return math.ceil(hr_hw[0] / lr_hw[0]), math.ceil(hr_hw[1] / lr_hw[1])


def select_hr_indices(scores: Tensor, lr_hw: Tuple[int, int], hr_hw: Tuple[int, int],
                      omega: float = 32., selection: str = 'window') -> Tensor:
    """Flat indices into the 1/4 grid for each image.

    Args:
        scores: (B, HW_lr) low-resolution attention summed over queries.
        lr_hw, hr_hw: the two grids.
        omega: k = floor(HW_lr / omega) windows.
        selection: ``'window'`` or ``'bilinear'``.

    Returns:
        Long tensor (B, k * s_h * s_w) of indices in ``[0, H_hr * W_hr)``.
    """
    if selection not in SELECTIONS:
        raise ValueError(f'selection must be one of {SELECTIONS}, got {selection!r}')
    (h, w), (hh, ww) = lr_hw, hr_hw
    k = num_windows(lr_hw, omega)
    sh, sw = window_size(lr_hw, hr_hw)
    if selection == 'bilinear':
        up = F.interpolate(scores.view(-1, 1, h, w), size=(hh, ww), mode='bilinear',
                           align_corners=False).flatten(1)
        return up.topk(min(k * sh * sw, hh * ww), dim=1).indices
    top = scores.topk(k, dim=1).indices  # (B, k)
    row, col = top // w, top % w
    # window origin on the 1/4 grid, shifted back inside the map at odd sizes
    r0 = torch.clamp(row * hh // h, max=hh - sh)
    c0 = torch.clamp(col * ww // w, max=ww - sw)
    dr = torch.arange(sh, device=scores.device)
    dc = torch.arange(sw, device=scores.device)
    rows = r0[..., None, None] + dr[:, None]  # (B, k, sh, 1)
    cols = c0[..., None, None] + dc[None, :]  # (B, k, 1, sw)
    return (rows * ww + cols).flatten(1)


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """tokens (B, N, C), index (B, M) -> (B, M, C)."""
    return torch.gather(tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1]))
