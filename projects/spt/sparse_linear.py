"""Unstructured tuning with parameters and optimizer state proportional to the number
of selected entries.

:class:`SparseDelta` holds the trainable values of the selected entries of one frozen
tensor (a 1-D parameter) and their fixed flat indices (a non-persistent buffer; the
allocation file is the source of the indices). There is no dense mask and no dense
trainable tensor: the optimizer only ever sees ``values``.

For weight matrices :meth:`SparseLinearDelta.linear` computes ``x (W + D)^T + b``
with a custom backward: the dense ``W + D`` only exists transiently inside forward /
backward (one matrix at a time, never saved for backward), ``W`` receives no
gradient, only the input columns that hold selected entries are saved, and the
gradient of the values is read from the (rows with entries) x (columns with entries)
block of ``g^T x``.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SparseDelta(nn.Module):
    """Trainable values added at fixed flat positions of a frozen tensor of ``shape``."""

    def __init__(self, shape: Sequence[int], index: Tensor) -> None:
        super().__init__()
        index = torch.as_tensor(index, dtype=torch.long).flatten()
        numel = 1
        for s in shape:
            numel *= int(s)
        if index.numel() == 0:
            raise ValueError('SparseDelta needs at least one index.')
        if int(index.min()) < 0 or int(index.max()) >= numel:
            raise ValueError(f'SparseDelta indices out of range for shape {tuple(shape)}.')
        if torch.unique(index).numel() != index.numel():
            raise ValueError('SparseDelta indices must be unique.')
        self.shape = tuple(int(s) for s in shape)
        index, _ = torch.sort(index)
        self.register_buffer('index', index, persistent=False)
        self.values = nn.Parameter(torch.zeros(index.numel()))

    def extra_repr(self) -> str:
        return f'shape={self.shape}, nnz={self.index.numel()}'

    def dense(self) -> Tensor:
        """The delta as a dense tensor (for folding and export)."""
        out = self.values.new_zeros(self.shape).flatten()
        return out.index_put((self.index,), self.values).view(self.shape)

    def add_to(self, base: Tensor) -> Tensor:
        """``base + delta`` with autograd to ``values`` (for small vectors)."""
        return base.flatten().index_add(0, self.index, self.values.to(base.dtype)).view(
            self.shape)


class _SparseDeltaLinear(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, values, index, rows_used, cols_used, local_index):
        if weight.requires_grad:
            raise RuntimeError('sparse delta tuning expects a frozen dense weight.')
        w = weight.flatten().index_add(0, index, values.to(weight.dtype)).view_as(weight)
        out = F.linear(x, w, bias)
        # the values' gradient only needs the input columns that hold selected entries
        x_cols = x.reshape(-1, x.shape[-1])
        if cols_used.numel() < x.shape[-1]:
            x_cols = x_cols.index_select(1, cols_used)
        ctx.save_for_backward(x_cols, weight, values, index, rows_used, local_index)
        ctx.x_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x_cols, weight, values, index, rows_used, local_index = ctx.saved_tensors
        grad_x = grad_values = grad_bias = None
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        if ctx.needs_input_grad[0]:
            w = weight.flatten().index_add(0, index, values.to(weight.dtype)).view_as(weight)
            grad_x = (g2 @ w).view(ctx.x_shape)
        if ctx.needs_input_grad[3]:
            # (rows with entries) x (columns with entries) block of g^T x
            part = g2.index_select(1, rows_used).t() @ x_cols
            grad_values = part.flatten()[local_index].to(values.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = g2.sum(0)
        return grad_x, None, grad_bias, grad_values, None, None, None, None


class SparseLinearDelta(SparseDelta):
    """:class:`SparseDelta` on a (d_out, d_in) weight, with the row bookkeeping of the
    memory-lean backward."""

    def __init__(self, shape: Sequence[int], index: Tensor) -> None:
        super().__init__(shape, index)
        if len(self.shape) != 2:
            raise ValueError('SparseLinearDelta is for 2-D weights.')
        d_in = self.shape[1]
        rows_used, row_pos = torch.unique(self.index // d_in, return_inverse=True)
        cols_used, col_pos = torch.unique(self.index % d_in, return_inverse=True)
        self.register_buffer('rows_used', rows_used, persistent=False)
        self.register_buffer('cols_used', cols_used, persistent=False)
        self.register_buffer('local_index', row_pos * cols_used.numel() + col_pos,
                             persistent=False)

    def linear(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return _SparseDeltaLinear.apply(x, weight, bias, self.values, self.index,
                                        self.rows_used, self.cols_used, self.local_index)
