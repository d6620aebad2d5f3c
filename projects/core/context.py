"""The per-forward context threaded through the ViT blocks.

One :class:`TokenContext` is created by the backbone's ``embed`` for every forward and
handed from block to block; a block returns a new one instead of storing anything on a
module. That keeps the backbone re-entrant (activation checkpointing recomputes a block,
two inputs of different sizes may interleave) and makes every per-forward fact -- the
patch grid, merged sizes, dispatcher masks, gate statistics, loss terms -- visible to the
layers that need it and to the model that logs or optimises it.

It is an immutable ``NamedTuple``: the ``with_*`` helpers return a copy, and the
mappings inside are never mutated (a recomputed block under checkpointing cannot add a
term twice).
"""
from types import MappingProxyType
from typing import Mapping, NamedTuple, Optional, Tuple

from torch import Tensor

_EMPTY: Mapping[str, Tensor] = MappingProxyType({})


class TokenContext(NamedTuple):
    """Per-forward state of a ViT.

    grid: (H, W) patch grid of the input.
    num_prefix: tokens before the patch tokens (1 = a class token, 0 = none).
    on_grid: True while the tokens after the prefix are still the H x W grid in raster
        order; a merging or dropping step sets it to False.
    size: (B, N, 1) how many original tokens each current token stands for, or None
        before the first merge (ToMe's size, for proportional attention).
    assignment: (B, N0) index of the current token each original token belongs to, or
        None when not traced or nothing merged yet (for unmerging dense outputs).
    trace: whether merging steps maintain ``assignment``.
    layer: index of the block being run (the backbone sets it).
    schedule: per-layer merge counts for this input (ToMe/PYRA), empty without merging.
    masks: token masks from dispatchers, ``'{name}.{layer}' -> (B, N)``.
    aux: auxiliary outputs for logging and losses (gate probabilities, activation
        rates), ``'{name}.{layer}' -> Tensor``.
    losses: loss terms added by layers, by name (summed if a name is added twice).
    dispatch: False runs the complete model: token gates and dispatchers keep every
        token (DyT's teacher pass).
    keys: (B, N) bool, the tokens attention may attend to in the current block, or
        None for all (set by the block for an attention gate; never carried between
        blocks).
    """
    grid: Tuple[int, int] = (0, 0)
    num_prefix: int = 1
    on_grid: bool = True
    size: Optional[Tensor] = None
    assignment: Optional[Tensor] = None
    trace: bool = False
    layer: int = 0
    schedule: Tuple[int, ...] = ()
    masks: Mapping[str, Tensor] = _EMPTY
    aux: Mapping[str, Tensor] = _EMPTY
    losses: Mapping[str, Tensor] = _EMPTY
    dispatch: bool = True
    keys: Optional[Tensor] = None

    @property
    def num_merge(self) -> int:
        """Token pairs the current layer merges (0 when the schedule does not say)."""
        return self.schedule[self.layer] if self.layer < len(self.schedule) else 0

    def at_layer(self, layer: int) -> 'TokenContext':
        return self._replace(layer=layer)

    def with_mask(self, name: str, mask: Tensor) -> 'TokenContext':
        return self._replace(masks=_frozen({**self.masks, f'{name}.{self.layer}': mask}))

    def with_aux(self, name: str, value: Tensor) -> 'TokenContext':
        return self._replace(aux=_frozen({**self.aux, f'{name}.{self.layer}': value}))

    def with_loss(self, name: str, value: Tensor) -> 'TokenContext':
        if name in self.losses:
            value = self.losses[name] + value
        return self._replace(losses=_frozen({**self.losses, name: value}))

    def aux_by_layer(self, name: str) -> Mapping[int, Tensor]:
        """``{layer: value}`` of one auxiliary output."""
        prefix = name + '.'
        return {int(k[len(prefix):]): v for k, v in self.aux.items()
                if k.startswith(prefix) and k[len(prefix):].isdigit()}

    def to_grid(self, x: Tensor, who: str = 'this layer') -> Tuple[Tensor, Tensor]:
        """Split (B, N, C) tokens into the prefix (B, P, C) and the patch map
        (B, C, H, W), for layers that work on the grid (convolutions).

        Raises when earlier layers merged or dropped tokens: the map no longer exists.
        """
        if not self.on_grid:
            raise RuntimeError(
                f'{who} (layer {self.layer}) needs the tokens on the {self.grid[0]}x'
                f'{self.grid[1]} patch grid, but an earlier layer merged or dropped '
                'tokens. Start token reduction after this layer (a merge schedule with '
                'zeros up to it), or use an attention that works on any token set.')
        bsz, n, c = x.shape
        h, w = self.grid
        if n != self.num_prefix + h * w:
            raise RuntimeError(f'{who} (layer {self.layer}): {n} tokens do not form '
                               f'{self.num_prefix} prefix + {h}x{w} grid tokens.')
        patches = x[:, self.num_prefix:].transpose(1, 2).reshape(bsz, c, h, w)
        return x[:, :self.num_prefix], patches


def _frozen(items: dict) -> Mapping[str, Tensor]:
    return MappingProxyType(items)
