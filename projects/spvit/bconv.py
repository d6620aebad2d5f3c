"""The bottleneck convolutions that SPViT builds from a pretrained MSA layer.

Per head h the value rows W_v^h (d_h x d), value bias b_v^h and output-projection
columns P^h (d x d_h) are mixed by pi = softmax(z / alpha) over heads, one mixture per
kernel position p (z is n_heads x 9): V_p, c_p, P_p. The 3x3 conv has kernel
K[:, :, p % 3, p // 3] = V_p (the official position order), bias sum_p c_p and the
1x1 projection sum_p P_p; the 1x1 conv uses the centre position p = 4 only. Both are
followed by BN(d_h) and ReLU before the projection, and add the projection bias.

Two ways to run the 3x3 conv: :func:`gather_conv3x3` (search: 9 per-position token
projections shifted over the zero-padded grid and summed) and :func:`conv3x3_weights`
+ ``F.conv2d`` (compact model). A test checks they agree on a non-square grid.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

CENTRE = 4
ROWS = [p % 3 for p in range(9)]
COLS = [p // 3 for p in range(9)]


def split_heads(qkv_w: Tensor, qkv_b: Tensor, proj_w: Tensor,
                num_heads: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-head value weights (h, d_h, d), value bias (h, d_h) and projection columns
    (h, d, d_h) of a fused qkv / proj pair (timm layout: rows q, k, v)."""
    d = proj_w.shape[0]
    dh = d // num_heads
    wv = qkv_w[2 * d:].reshape(num_heads, dh, d)
    bv = qkv_b[2 * d:].reshape(num_heads, dh)
    wp = proj_w.reshape(d, num_heads, dh).permute(1, 0, 2)
    return wv, bv, wp


def mix_heads(wv: Tensor, bv: Tensor, wp: Tensor, z: Tensor,
              alpha: float) -> Tuple[Tensor, Tensor, Tensor]:
    """V (9, d_h, d), c (9, d_h), P (9, d, d_h): one head mixture per kernel position."""
    pi = torch.softmax(z / alpha, dim=0)
    return (torch.einsum('hp,hod->pod', pi, wv), torch.einsum('hp,ho->po', pi, bv),
            torch.einsum('hp,hdo->pdo', pi, wp))


def conv1x1_weights(v: Tensor, c: Tensor, p: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(kernel (d_h, d, 1, 1), bias (d_h,), projection (d, d_h))."""
    return v[CENTRE][..., None, None], c[CENTRE], p[CENTRE]


def conv3x3_weights(v: Tensor, c: Tensor, p: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(kernel (d_h, d, 3, 3), bias (d_h,), projection (d, d_h))."""
    kernel = v.new_zeros(v.shape[1], v.shape[2], 3, 3)
    for pos in range(9):
        kernel[:, :, ROWS[pos], COLS[pos]] = v[pos]
    return kernel, c.sum(0), p.sum(0)


def gather_conv3x3(patches: Tensor, v: Tensor, c: Tensor) -> Tensor:
    """The 3x3 conv of a (B, d, H, W) map by per-position projections: each token is
    projected by all nine V_p, and output (i, j) sums position p's projection of the
    token at (i + row_p - 1, j + col_p - 1) (zero outside the grid)."""
    bsz, _, h, w = patches.shape
    proj = torch.einsum('bdhw,pod->bpohw', patches, v)
    proj = F.pad(proj, (1, 1, 1, 1))
    out = sum(proj[:, pos, :, ROWS[pos]:ROWS[pos] + h, COLS[pos]:COLS[pos] + w]
              for pos in range(9))
    return out + c.sum(0)[None, :, None, None]
