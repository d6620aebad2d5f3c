"""The per-forward context threaded through the ViT blocks.

One :class:`TokenContext` is created by the backbone's ``embed`` for every forward and
handed from block to block; a block returns a new one instead of storing anything on a
module. That keeps the backbone re-entrant (activation checkpointing recomputes a block,
two inputs of different sizes may interleave) and makes every per-forward fact visible
to the parts that need it and to the model that logs or optimises it.

The context holds only what any block may need: the patch grid, the prefix, the layer,
how the current tokens relate to the original ones (:class:`TokenGroups`, kept by a
token-reduction step), the masks gates decided, and the outputs for logging and losses.
A method's own per-forward state is a typed entry in ``state`` (keyed by its type, so
two methods cannot collide): inputs such as ESTA's stitch id are given to ``embed``,
and a part that owns further state adds it with :meth:`TokenContext.with_state`.

It is an immutable ``NamedTuple``: the ``with_*`` helpers return a copy, and the
mappings inside are never mutated (a recomputed block under checkpointing cannot add a
term twice).
"""
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Optional, Tuple, Type, TypeVar

from torch import Tensor

_EMPTY: Mapping = MappingProxyType({})
T = TypeVar('T')


class TokenGroups(NamedTuple):
    """How the current tokens stand for the original ones after a reduction step.

    size: (B, N, 1) how many original tokens each current token stands for
        (proportional attention and size-weighted pooling read it).
    assignment: (B, N0) index of the current token each original token belongs to, or
        None when the backbone's outputs do not need it (``TokenContext.trace``).
    """
    size: Tensor
    assignment: Optional[Tensor] = None

    def unmerge(self, x: Tensor) -> Tensor:
        """Tokens (B, N, C) spread back over the original tokens (B, N0, C): each one
        receives a copy of the token its group became."""
        return unmerge(x, self.assignment)

    def select(self, index: Tensor) -> 'TokenGroups':
        """The groups of the samples ``index`` only."""
        assignment = None if self.assignment is None else self.assignment[index]
        return TokenGroups(self.size[index], assignment)


def unmerge(x: Tensor, assignment: Tensor) -> Tensor:
    """Scatter merged tokens (B, M, C) back to the original tokens (B, N0, C).

    Every original token receives a copy of the token its group was merged into.
    """
    return x.gather(1, assignment[..., None].expand(-1, -1, x.shape[-1]))


class TokenContext(NamedTuple):
    """Per-forward state of a ViT.

    grid: (H, W) patch grid of the input.
    num_prefix: tokens before the patch tokens (1 = a class token, 0 = none).
    layer: index of the block being run (the backbone sets it).
    on_grid: True while the tokens after the prefix are still the H x W grid in raster
        order; a merging or dropping step sets it to False.
    groups: set by the first step that combines tokens (None before).
    trace: whether such steps must keep ``groups.assignment`` (the backbone's outputs
        are per patch, so they are unmerged).
    gated: False runs the complete model: blocks do not consult their gates, so every
        token runs every part (DyT's teacher pass).
    masks: the decisions gates took, ``'{mlp|attn|block|layer}.{layer}' -> mask``
        (recorded by the block; pictures and multiply-add counts read them).
    aux: auxiliary outputs for logging and losses (gate probabilities, activation
        rates), ``'{name}.{layer}' -> Tensor``.
    losses: loss terms added by parts, by name (summed if a name is added twice).
    state: typed per-forward entries of methods, ``{type(entry): entry}``.
    """
    grid: Tuple[int, int] = (0, 0)
    num_prefix: int = 1
    layer: int = 0
    on_grid: bool = True
    groups: Optional[TokenGroups] = None
    trace: bool = False
    gated: bool = True
    masks: Mapping[str, Tensor] = _EMPTY
    aux: Mapping[str, Tensor] = _EMPTY
    losses: Mapping[str, Tensor] = _EMPTY
    state: Mapping[type, Any] = _EMPTY

    def at_layer(self, layer: int) -> 'TokenContext':
        return self._replace(layer=layer)

    def with_groups(self, groups: TokenGroups) -> 'TokenContext':
        """After a step that combined tokens: they are no longer the patch grid."""
        return self._replace(groups=groups, on_grid=False)

    def with_mask(self, name: str, mask: Tensor) -> 'TokenContext':
        return self._replace(masks=_frozen({**self.masks, f'{name}.{self.layer}': mask}))

    def with_aux(self, name: str, value: Tensor) -> 'TokenContext':
        return self._replace(aux=_frozen({**self.aux, f'{name}.{self.layer}': value}))

    def with_loss(self, name: str, value: Tensor) -> 'TokenContext':
        if name in self.losses:
            value = self.losses[name] + value
        return self._replace(losses=_frozen({**self.losses, name: value}))

    def with_state(self, *entries: Any) -> 'TokenContext':
        """A copy holding ``entries``, each under its own type (replacing one of the
        same type)."""
        return self._replace(state=_frozen({**self.state, **{type(e): e for e in entries}}))

    def get(self, kind: Type[T]) -> Optional[T]:
        """The entry of type ``kind``, or None when this forward has none."""
        return self.state.get(kind)

    def aux_by_layer(self, name: str) -> Mapping[int, Tensor]:
        """``{layer: value}`` of one auxiliary output."""
        return _by_layer(self.aux, name)

    def masks_by_layer(self, name: str) -> Mapping[int, Tensor]:
        """``{layer: mask}`` of one kind of gate decision ('mlp', 'attn', 'block',
        'layer')."""
        return _by_layer(self.masks, name)

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


def _by_layer(items: Mapping[str, Tensor], name: str) -> Mapping[int, Tensor]:
    prefix = name + '.'
    return {int(k[len(prefix):]): v for k, v in items.items()
            if k.startswith(prefix) and k[len(prefix):].isdigit()}


def _frozen(items: dict) -> Mapping:
    return MappingProxyType(items)
