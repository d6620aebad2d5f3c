"""Bipartite soft matching (ToMe) as pure functions.

The matching is computed once per layer, without gradients, and returned as a small
object that :func:`merge_weighted` merges with and whose methods compose the integer
assignment recording where every original token went (for :func:`unmerge`). Nothing here holds state across
forward calls: the caller threads ``size`` and ``assignment`` through its own forward,
which keeps the backbone re-entrant (activation checkpointing, interleaved forwards).

Export (``torch.onnx.export``): two eager operations have no faithful ONNX form, so
while exporting (``torch.onnx.is_in_onnx_export()``) the same arithmetic is written
with operations that have one, and eager keeps its fast path:

- ``index_add_`` with repeated indices (two sources merged into one destination,
  which ToMe allows) exports as ``x + ScatterElements(zeros, index, src)`` without
  reduction, which keeps only one of the repeated writes: the graph dropped all but
  one source of such a destination (``scatter_add`` has the same form below opset 16).
  Exported, both sums are a one-hot matmul, right at every opset.
- ``argsort`` exports as ``TopK``, which orders equal values by index (ONNX spec);
  PyTorch's default (unstable) sort orders them otherwise in longer rows, so tied
  similarities (identical tokens) picked other sources. Eager now sorts stably, which
  is the order TopK gives.
"""
from typing import NamedTuple, Optional, Protocol, Tuple

import torch
from torch import Tensor

from ..vit.context import unmerge  # noqa: F401  (re-exported: ToMe's unmerge)


class Modulation(Protocol):
    """Re-activation of the tokens about to merge (PYRA): ``scale(weighted sources,
    their weighted destinations, source sizes, destination sizes)`` -> a factor
    (B, r, C) that multiplies each source before it is averaged in."""

    def scale(self, src: Tensor, dst: Tensor, src_size: Tensor,
              dst_size: Tensor) -> Tensor: ...


class TokenMatching(NamedTuple):
    """One layer's matching. Set A = even positions, set B = odd positions.

    unm_idx: (B, Na - r, 1) positions in A that stay unmerged (output order).
    src_idx: (B, r, 1) positions in A merged away, by descending similarity.
    dst_idx: (B, r, 1) the position in B each source is merged into.
    """
    unm_idx: Tensor
    src_idx: Tensor
    dst_idx: Tensor
    num_tokens: int

    @property
    def r(self) -> int:
        return self.src_idx.shape[1]

    def kept_rows(self, bsz_offsets: Tensor) -> Tensor:
        """Flat row indices into (B*N, C) of the tokens that survive, in output order
        ``[unmerged A tokens, all B tokens]``; ``bsz_offsets`` is (B, 1) = b * N."""
        num_b = self.num_tokens // 2
        b_pos = torch.arange(1, 2 * num_b, 2, device=self.unm_idx.device)
        pos = torch.cat([2 * self.unm_idx[..., 0], b_pos.expand(self.unm_idx.shape[0], -1)], 1)
        return (pos + bsz_offsets).flatten()

    def assignment(self) -> Tensor:
        """(B, N) int64: index in the merged sequence that each input token went to."""
        bsz = self.unm_idx.shape[0]
        device = self.unm_idx.device
        num_a = (self.num_tokens + 1) // 2
        num_b = self.num_tokens // 2
        num_unm = num_a - self.r
        to_a = torch.empty(bsz, num_a, dtype=torch.long, device=device)
        to_a.scatter_(1, self.unm_idx[..., 0],
                      torch.arange(num_unm, device=device).expand(bsz, -1))
        to_a.scatter_(1, self.src_idx[..., 0], num_unm + self.dst_idx[..., 0])
        out = torch.empty(bsz, self.num_tokens, dtype=torch.long, device=device)
        out[:, ::2] = to_a
        out[:, 1::2] = num_unm + torch.arange(num_b, device=device)
        return out

    def compose(self, assignment: Optional[Tensor]) -> Tensor:
        """Fold this layer into an assignment from original tokens to current ones."""
        step = self.assignment()
        return step if assignment is None else step.gather(1, assignment)


def _argsort_descending(x: Tensor) -> Tensor:
    """Indices sorting the last axis by descending value, equal values by ascending
    index: the order of ONNX ``TopK``, so eager and exported graphs pick the same
    tokens when similarities tie. (A stable sort does not export with the TorchScript
    exporter; ``TopK`` is stable by definition.)"""
    if torch.onnx.is_in_onnx_export():
        return x.argsort(dim=-1, descending=True)
    return x.argsort(dim=-1, descending=True, stable=True)


def _sum_into(base: Tensor, index: Tensor, src: Tensor) -> Tensor:
    """``base`` (B, M, K) with each row ``src[b, j]`` (B, R, K) added to row
    ``index[b, j]`` (B, R), repeated indices accumulating, as a one-hot matmul: the
    export form of ``scatter_add`` / ``index_add_``, whose ONNX graph keeps only one of
    repeated writes. Exact for the size sums (small integers)."""
    positions = torch.arange(base.shape[1], device=base.device)
    one_hot = (index[..., None] == positions).to(src.dtype)          # (B, R, M)
    return base + one_hot.transpose(1, 2) @ src


def max_merge(num_tokens: int, class_token: bool) -> int:
    """ToMe's cap: at most half of the mergeable tokens can go in one layer."""
    return max((num_tokens - int(class_token)) // 2, 0)


def bipartite_soft_matching(metric: Tensor, r: int,
                            class_token: bool = True) -> Optional[TokenMatching]:
    """Match the r most similar (A, B) pairs by cosine similarity of ``metric``.

    metric: (B, N, Cm), e.g. attention keys averaged over heads. Returns None when
    nothing is merged (r <= 0 after capping). The class token (position 0) is never a
    source, and since it sits in A it is never a destination either.
    """
    num_tokens = metric.shape[1]
    r = min(r, max_merge(num_tokens, class_token))
    if r <= 0:
        return None
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2], metric[:, 1::2]
        scores = a @ b.transpose(-1, -2)
        if class_token:
            scores[:, 0, :] = -float('inf')
        node_max, node_idx = scores.max(dim=-1)  # ties: the first index, as ONNX ArgMax
        edge_idx = _argsort_descending(node_max)[..., None]
        unm_idx = edge_idx[:, r:]
        src_idx = edge_idx[:, :r]
        dst_idx = node_idx[..., None].gather(1, src_idx)
        if class_token:
            # keep the class token first in the output
            unm_idx = unm_idx.sort(dim=1)[0]
    return TokenMatching(unm_idx, src_idx, dst_idx, num_tokens)


def merge_weighted(matching: TokenMatching, x: Tensor, size: Optional[Tensor],
                   modulate: Optional[Modulation] = None) -> Tuple[Tensor, Tensor]:
    """Size-weighted average merge with size tracking (ToMe's ``merge_wavg``).

    Returns the merged tokens and their sizes (B, N - r, 1): a merged token is the mean
    of all original patches it stands for, and sizes always sum to the input total.

    Only the r merged pairs do arithmetic. A destination d with sources s (weights
    w_s = size_s, total W = size_d + sum w_s) becomes ``x_d + sum_s (w_s x_s - w_s x_d) / W``,
    which is ToMe's ``(size_d x_d + sum_s w_s x_s) / W``; every other token is copied once
    (ToMe multiplies and divides all N tokens by their sizes). With ``modulate`` (PYRA),
    each source is first multiplied by its modulation factor.
    """
    bsz, n, c = x.shape
    r = matching.r
    if size is None:
        size = x.new_ones(bsz, n, 1)
    a_size, b_size = size[:, ::2], size[:, 1::2]
    src_idx, dst_idx = matching.src_idx, matching.dst_idx
    offsets = torch.arange(bsz, device=x.device)[:, None]
    flat = x.reshape(bsz * n, c)
    src = flat.index_select(0, (2 * src_idx[..., 0] + offsets * n).flatten())      # (B*r, C)
    dst = flat.index_select(0, (2 * dst_idx[..., 0] + 1 + offsets * n).flatten())
    src_size = a_size.gather(1, src_idx)                                            # (B, r, 1)
    exporting = torch.onnx.is_in_onnx_export()
    if exporting:
        new_b_size = _sum_into(b_size, dst_idx[..., 0], src_size)
    else:
        new_b_size = b_size.scatter_add(1, dst_idx, src_size)
    inv_total = new_b_size.gather(1, dst_idx).reciprocal().reshape(-1, 1)
    src_size = src_size.reshape(-1, 1)
    if modulate is not None:
        dst_size = b_size.gather(1, dst_idx)
        src = src * modulate.scale((src * src_size).view(bsz, r, c),
                                   dst.view(bsz, r, c) * dst_size,
                                   src_size.view(bsz, r, 1), dst_size).reshape(-1, c)
    delta = (src - dst) * (src_size * inv_total)

    out = flat.index_select(0, matching.kept_rows(offsets * n))
    num_unm = matching.unm_idx.shape[1]
    if exporting:
        out = out.view(bsz, n - r, c)
        merged = _sum_into(out[:, num_unm:], dst_idx[..., 0], delta.view(bsz, r, c))
        out = torch.cat([out[:, :num_unm], merged], 1)
    else:
        out_rows = (dst_idx[..., 0] + num_unm + offsets * (n - r)).flatten()
        out = out.index_add_(0, out_rows, delta).view(bsz, n - r, c)
    new_size = torch.cat([a_size.gather(1, matching.unm_idx), new_b_size], 1)
    return out, new_size
