"""Drop-in replacements of the tuned modules. Each keeps its frozen ``weight`` /
``bias`` (or ``gamma``) under the original names, so pretrained checkpoints load by
name, and adds only what the allocation asks for:

- ``sparse_weight`` / ``sparse_bias`` / ``sparse_gamma``: :class:`SparseDelta` values
  (unstructured entries, or every entry of a fully tuned vector);
- ``lora`` / ``adapter``: a :class:`ModuleDict` of structured modules keyed by the row
  block they act on (``'q'``, ``'k'``, ``'v'`` for the fused qkv, ``'all'`` otherwise).

Each layer is :class:`~projects.core.peft.foldable.Foldable`: :meth:`delta_weights`
(sparse values and SPT-LoRA, summed) is the one source of the dense update, used by
in-place merging, unmerging and the folded export; its own tensors are the pretrained
ones, its children (the sparse deltas, LoRA, Adapter) the trainable additions, which
is what freezes and trains an SPT backbone.
"""
from typing import Dict, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from ..core.peft.foldable import Foldable
from ..vit.block import LayerScale
from .sparse_linear import SparseDelta, SparseLinearDelta
from .structured import LoRA, Adapter

Segments = Dict[str, Tuple[int, int]]


def _pad_rows(y: Tensor, rows: Tuple[int, int], total: int) -> Tensor:
    return F.pad(y, (rows[0], total - rows[1]))


def _dense(**deltas: Optional[SparseDelta]) -> Dict[str, Tensor]:
    """``{leaf: dense update}`` of the sparse deltas that exist."""
    return {leaf: d.dense() for leaf, d in deltas.items() if d is not None}


class SPTLayer(Foldable):
    """The SPT replacements (one type, so a backbone finds its SPT layers): updates
    made of sparse deltas and, for linear layers, structured modules."""


class SPTLinear(SPTLayer, nn.Linear):
    """``nn.Linear`` with a sparse delta and structured modules on row blocks."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 segments: Optional[Segments] = None) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.segments: Segments = dict(segments or {'all': (0, out_features)})
        self.sparse_weight: Optional[SparseLinearDelta] = None
        self.sparse_bias: Optional[SparseDelta] = None
        self.lora = nn.ModuleDict()
        self.adapter = nn.ModuleDict()
        self.merged = False

    @classmethod
    def from_linear(cls, linear: nn.Linear, segments: Optional[Segments] = None) -> 'SPTLinear':
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, segments)
        new.weight = linear.weight
        new.bias = linear.bias
        return new

    def add_sparse_weight(self, index: Tensor) -> None:
        self.sparse_weight = SparseLinearDelta(tuple(self.weight.shape), index)

    def add_sparse_bias(self, index: Tensor) -> None:
        self.sparse_bias = SparseDelta(tuple(self.bias.shape), index)

    def add_structured(self, segment: str, kind: str, rank: int, scale: float = 1.0,
                       dropout: float = 0.0) -> None:
        lo, hi = self.segments[segment]
        if kind == 'lora':
            self.lora[segment] = LoRA(self.in_features, hi - lo, rank, scale, dropout)
        elif kind == 'adapter':
            self.adapter[segment] = Adapter(hi - lo, rank, dropout)
        else:
            raise ValueError(f'unknown structured type {kind!r}')

    # ------------------------------------------------------------------ forward
    def _bias(self) -> Optional[Tensor]:
        if self.bias is None or self.sparse_bias is None or self.merged:
            return self.bias
        return self.sparse_bias.add_to(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        bias = self._bias()
        if self.sparse_weight is not None and not self.merged:
            y = self.sparse_weight.linear(x, self.weight, bias)
        else:
            y = F.linear(x, self.weight, bias)
        if not self.merged:
            for seg, lora in self.lora.items():
                y = y + _pad_rows(lora(x), self.segments[seg], self.out_features)
        for seg, adapter in self.adapter.items():
            lo, hi = self.segments[seg]
            y = y + _pad_rows(adapter(y[..., lo:hi]), (lo, hi), self.out_features)
        return y

    # --------------------------------------------------------------- deployment
    def delta_weights(self) -> Dict[str, Tensor]:
        """Dense updates of ``weight`` / ``bias`` from the foldable parts."""
        out = _dense(weight=self.sparse_weight, bias=self.sparse_bias)
        for seg, lora in self.lora.items():
            lo, hi = self.segments[seg]
            part = F.pad(lora.delta_weight(), (0, 0, lo, self.out_features - hi))
            out['weight'] = out['weight'] + part if 'weight' in out else part
        return out

    def fold_blocker(self) -> Optional[str]:
        if len(self.adapter):
            return ('SPT-Adapter modules are non-linear and cannot be folded into the '
                    'weights; deploy the SPT checkpoint as is.')
        return None


class SPTLayerNorm(SPTLayer, nn.LayerNorm):
    """``nn.LayerNorm`` with sparse deltas on its affine vectors."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sparse_weight: Optional[SparseDelta] = None
        self.sparse_bias: Optional[SparseDelta] = None
        self.merged = False

    @classmethod
    def from_norm(cls, norm: nn.LayerNorm) -> 'SPTLayerNorm':
        new = cls(norm.normalized_shape, eps=norm.eps,
                  elementwise_affine=norm.elementwise_affine)
        new.weight, new.bias = norm.weight, norm.bias
        return new

    def add_sparse(self, leaf: str, index: Tensor) -> None:
        setattr(self, f'sparse_{leaf}', SparseDelta(tuple(getattr(self, leaf).shape), index))

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.weight, self.bias
        if not self.merged:
            if self.sparse_weight is not None:
                w = self.sparse_weight.add_to(w)
            if self.sparse_bias is not None:
                b = self.sparse_bias.add_to(b)
        return F.layer_norm(x, self.normalized_shape, w, b, self.eps)

    def delta_weights(self) -> Dict[str, Tensor]:
        return _dense(weight=self.sparse_weight, bias=self.sparse_bias)


class SPTLayerScale(SPTLayer, LayerScale):
    """LayerScale with a sparse delta on ``gamma``."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__(dim, init_value)
        self.sparse_gamma: Optional[SparseDelta] = None
        self.merged = False

    @classmethod
    def from_layer_scale(cls, ls: LayerScale) -> 'SPTLayerScale':
        new = cls(ls.gamma.numel())
        new.gamma = ls.gamma
        return new

    def add_sparse(self, leaf: str, index: Tensor) -> None:
        self.sparse_gamma = SparseDelta(tuple(self.gamma.shape), index)

    def forward(self, x: Tensor) -> Tensor:
        g = self.gamma
        if self.sparse_gamma is not None and not self.merged:
            g = self.sparse_gamma.add_to(g)
        return x * g

    def delta_weights(self) -> Dict[str, Tensor]:
        return _dense(gamma=self.sparse_gamma)
