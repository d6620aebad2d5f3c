"""LoRA on the fused q/k/v projection of a ViT attention layer.

Built in the model constructor (not by a hook) so the optimizer and the DDP wrapper see
the adapter parameters. The class keeps ``weight`` / ``bias`` under their plain
``nn.Linear`` names, so pretrained checkpoints load without renaming, and one
:meth:`delta_weight` serves merging, unmerging and exporting a folded checkpoint.
"""
import math
from typing import Dict, Iterable, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...vit.param_roles import AddsParameters

QKV_TARGETS = ('q', 'k', 'v')


class LoRAQKVLinear(AddsParameters, nn.Linear):
    """``nn.Linear(D, 3D)`` plus a rank-``rank`` update on each of ``targets`` (q/k/v).

    delta_W[t] = (alpha / rank) * B_t A_t, with A_t kaiming-uniform and B_t zero, so the
    layer equals the plain linear at initialisation.
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
            {t: nn.Parameter(torch.zeros(in_features, rank)) for t in self.targets})
        for a in self.lora_A.values():
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.merged = False

    def new_parameter_names(self) -> List[str]:
        """Only the adapter: ``weight`` / ``bias`` are the pretrained projection."""
        return [n for n, _ in self.named_parameters() if n.startswith(('lora_A.', 'lora_B.'))]

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
        """The (3D, D) update that LoRA adds to ``weight``."""
        return (self._stacked_b() @ self._stacked_a()) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            return out
        low = F.linear(self.lora_dropout(x), self._stacked_a())
        return out + F.linear(low, self._stacked_b()) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``weight`` (inference speed of a plain linear)."""
        if not self.merged:
            self.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta_weight()
            self.merged = False


def lora_layers(model: nn.Module) -> Dict[str, LoRAQKVLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRAQKVLinear)}


class NothingToFoldError(ValueError):
    """A model without parameter-efficient updates to fold (it already is plain)."""


def fold_lora_state_dict(model: nn.Module, prefix: str = '') -> Dict[str, Tensor]:
    """A state dict of ``model`` with every LoRA update folded into its base weight and
    the adapter tensors dropped: it loads into the same model built without LoRA."""
    layers = lora_layers(model)
    if not layers:
        raise NothingToFoldError('fold_lora_state_dict: the model has no LoRA layer to fold '
                                 '(it was built without lora_cfg).')
    adapter_keys = {f'{name}.{p}' if name else p for name, layer in layers.items()
                    for p in layer.new_parameter_names()}
    state = {}
    for key, value in model.state_dict().items():
        name, _, leaf = key.rpartition('.')
        if key in adapter_keys:
            continue
        layer = layers.get(name)
        if layer is not None and leaf == 'weight' and not layer.merged:
            value = value + layer.delta_weight().detach()
        state[prefix + key] = value.detach().clone()
    return state


def count_params(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)
