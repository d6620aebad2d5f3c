"""LoRA on the fused q/k/v projection of a ViT attention layer.

Built in the model constructor (not by a hook) so the optimizer and the DDP wrapper see
the adapter parameters. The class keeps ``weight`` / ``bias`` under their plain
``nn.Linear`` names, so pretrained checkpoints load without renaming; the update is
:func:`~projects.core.peft.low_rank.low_rank_delta` per target, and the layer is
:class:`~projects.core.peft.foldable.Foldable` (one :meth:`delta_weight` serves
merging, unmerging and exporting a folded checkpoint).
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fold import merged_state_dict
from .foldable import Foldable, NothingToFoldError
from .low_rank import init_low_rank_, low_rank_delta, low_rank_forward

QKV_TARGETS = ('q', 'k', 'v')

__all__ = ['QKV_TARGETS', 'LoRAQKVLinear', 'lora_layers', 'fold_lora_state_dict',
           'NothingToFoldError']


class LoRAQKVLinear(Foldable, nn.Linear):
    """``nn.Linear(D, 3D)`` plus a rank-``rank`` update on each of ``targets`` (q/k/v).

    delta_W[t] = (alpha / rank) * B_t A_t, with A_t kaiming-uniform and B_t zero, so the
    layer equals the plain linear at initialisation. State-dict names: ``lora_A.<t>``,
    ``lora_B.<t>``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rank: int = 8, alpha: float = 8.0, dropout: float = 0.0,
                 targets: Sequence[str] = QKV_TARGETS) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if out_features != 3 * in_features:
            raise ValueError('LoRAQKVLinear expects a fused qkv projection (out = 3 * in).')
        unknown = set(targets) - set(QKV_TARGETS)
        if not targets or unknown:
            raise ValueError(f'LoRA targets must be a non-empty subset of {QKV_TARGETS}, '
                             f'got {list(targets)}.')
        if rank <= 0:
            raise ValueError(f'LoRA rank must be positive, got {rank}.')
        self.rank = rank
        self.scaling = alpha / rank
        self.targets = tuple(t for t in QKV_TARGETS if t in targets)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterDict(
            {t: nn.Parameter(torch.empty(rank, in_features)) for t in self.targets})
        self.lora_B = nn.ParameterDict(
            {t: nn.Parameter(torch.empty(in_features, rank)) for t in self.targets})
        for t in self.targets:
            init_low_rank_(self.lora_A[t], self.lora_B[t])
        self.merged = False

    def _stacked_b(self) -> Tensor:
        """(3D, T*rank): B_t placed at target t's output rows and rank columns."""
        dim = self.in_features
        out = self.weight.new_zeros(3 * dim, len(self.targets) * self.rank)
        for j, t in enumerate(self.targets):
            i = QKV_TARGETS.index(t)
            out[i * dim:(i + 1) * dim, j * self.rank:(j + 1) * self.rank] = self.lora_B[t]
        return out

    def _stacked_a(self) -> Tensor:
        return torch.cat([self.lora_A[t] for t in self.targets], dim=0)

    def delta_weight(self) -> Tensor:
        """The (3D, D) update that LoRA adds to ``weight``: the targets' low-rank
        updates stacked as one block-structured low-rank product."""
        return low_rank_delta(self._stacked_a(), self._stacked_b(), self.scaling)

    def delta_weights(self) -> Dict[str, Tensor]:
        return {'weight': self.delta_weight()}

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            return out
        return out + low_rank_forward(self.lora_dropout(x), self._stacked_a(),
                                      self._stacked_b(), self.scaling)


def lora_layers(model: nn.Module) -> Dict[str, LoRAQKVLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRAQKVLinear)}


def fold_lora_state_dict(model: nn.Module) -> Dict[str, Tensor]:
    """:func:`~projects.core.peft.fold.merged_state_dict` of a model that must have
    LoRA (the error names the missing ``lora_cfg``): it loads into the same model built
    without LoRA."""
    if not lora_layers(model):
        raise NothingToFoldError('fold_lora_state_dict: the model has no LoRA layer to fold '
                                 '(it was built without lora_cfg).')
    return merged_state_dict(model)
