"""The interface of each block slot, one small base class per slot.

A part subclasses the base of its slot; the block checks this at build and calls every
part of a slot the same way. Optional abilities are class attributes with a default
(False / None), set by the parts that have them, so the block never probes a part:

==================  =========================================  =========================
slot                call                                        declared abilities
==================  =========================================  =========================
``attn_cfg``        ``forward(x, ctx, attend=None,              ``provides_metric``,
                    need_metric=False) -> (out, metric)``       ``masks_keys``, ``packs``
``mlp_cfg``         ``forward(x) -> x`` (token-wise)            --
``merger``          ``forward(x, metric, ctx) -> (x, ctx)``     ``needs_metric(ctx)``
``mlp_gate`` /      ``forward(x, ctx) -> (GateDecision, ctx)``  ``slot``, ``gates_mlp``,
``attn_gate``                                                   ``per_sample``,
                                                                ``mask_name``
``adapter``         ``forward(x, ctx) -> Tensor``               --
==================  =========================================  =========================

Every part counts its own multiply-adds for one sample with the formulas of
:mod:`projects.vit.cost` -- token-wise slots ``macs(num_tokens)``, the attention slot
``macs(num_tokens, num_prefix)`` (a conv op acts on the patches only), a reducer
``macs(num_tokens, num_prefix, metric_dims)`` and ``tokens_after(num_tokens,
num_prefix)`` -- and may check itself against the built backbone (:meth:`Part.setup`).
A backbone's loss terms (``aux_losses``) subclass :class:`AuxLossTerm`.
"""
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence, Tuple

from torch import Tensor, nn

from .context import TokenContext

if TYPE_CHECKING:  # pragma: no cover
    from .backbone import ComposableViT


#: the keyword defaults a block gives its parts
BLOCK_DIMS = frozenset({'dim', 'num_heads', 'qkv_bias', 'attn_drop', 'proj_drop', 'hidden',
                        'drop'})


class Part(nn.Module):
    """What every block part may declare."""

    def __init__(self, **dims) -> None:
        # the block passes its dimensions as keyword defaults; a part without options
        # of its own may leave them unused, but a config option it does not take is an
        # error, not silently dropped
        unknown = sorted(set(dims) - BLOCK_DIMS)
        if unknown:
            raise TypeError(f'{type(self).__name__} takes no options {unknown}; remove them '
                            'from its config or give the part an __init__ that takes them.')
        super().__init__()

    def macs(self, num_tokens: float) -> float:
        """Multiply-adds of one sample's forward on ``num_tokens`` tokens (its own
        width and op; formulas in :mod:`projects.vit.cost`). Every part that runs
        declares it, 0 when it does no matrix product, so no cost is silently missing."""
        raise NotImplementedError(
            f'{type(self).__name__} does not count its multiply-adds: implement its '
            'slot\'s macs() (projects/vit/interfaces.py) with the formulas of '
            'projects.vit.cost, returning 0 if it does no matrix product.')

    def setup(self, backbone: 'ComposableViT') -> None:
        """Called once the backbone is built, for checks that need all of it."""


class AttentionPart(Part):
    """Attention slot: ``forward(x, ctx, attend=None, need_metric=False) -> (out,
    metric)``.

    Abilities (the block asks for them only where the part declares them):
        provides_metric: with ``need_metric=True`` returns (B, N, Cm) for a token
            merger to match on (ToMe: the keys averaged over heads); a block with a
            merger refuses an attention without it.
        masks_keys: accepts ``attend`` (B, N) bool -- only those tokens may be attended
            to (an attention gate's training path).
        packs: has :meth:`forward_packed` (an attention gate's eval path).
        metric_dims: channels of that metric (what a merger's matching costs).
    """
    provides_metric: bool = False
    masks_keys: bool = False
    packs: bool = False
    metric_dims: Optional[int] = None

    def macs(self, num_tokens: float, num_prefix: int = 1) -> float:
        """Multiply-adds of one sample on ``num_tokens`` tokens, ``num_prefix`` of them
        before the patches (an op on the patch grid counts only the patches)."""
        return super().macs(num_tokens)

    def forward(self, x: Tensor, ctx: TokenContext = TokenContext(),
                attend: Optional[Tensor] = None,
                need_metric: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        raise NotImplementedError

    def forward_packed(self, rows: Tensor, lengths: Sequence[int],
                       ctx: TokenContext = TokenContext()) -> Tensor:
        """Attention over ragged sequences packed into rows (K, C), ``lengths[b]`` rows
        per sample, without padding."""
        raise NotImplementedError(f'{type(self).__name__} declares no packed execution.')


class MlpPart(Part):
    """MLP slot: ``forward(x) -> x``, token-wise, so the block may run it on any subset
    of the tokens."""

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class TokenReducer(Part):
    """Token-reduction slot (between attention and MLP): ``forward(x, metric, ctx) ->
    (x, ctx)``. A step that combines tokens records it with ``ctx.with_groups``; one
    that only drops tokens sets ``on_grid=False``."""

    def needs_metric(self, ctx: TokenContext) -> bool:
        """Whether this forward's attention must return its matching metric."""
        return False

    def tokens_after(self, num_tokens: int, num_prefix: int = 1) -> int:
        """Tokens this step leaves of ``num_tokens`` (an analytic count needs it)."""
        raise NotImplementedError(
            f'{type(self).__name__} does not say how many tokens it leaves: implement '
            'tokens_after(num_tokens, num_prefix).')

    def macs(self, num_tokens: float, num_prefix: int = 1,
             metric_dims: Optional[int] = None) -> float:
        """Multiply-adds of one sample's reduction of ``num_tokens`` tokens, matching on
        a metric of ``metric_dims`` channels (the attention's)."""
        return super().macs(num_tokens)

    def forward(self, x: Tensor, metric: Optional[Tensor],
                ctx: TokenContext) -> Tuple[Tensor, TokenContext]:
        raise NotImplementedError


class GateDecision(NamedTuple):
    """What a gate decided for one block.

    keep: (B, N) per token or (B,) per sample (the gate's declared ``per_sample``).
    hard: True for exact 0/1 decisions (a bool tensor), which lets the block skip the
        work of the inactive tokens or samples; False for straight-through values that
        scale the update, so the gradient reaches the gate.
    """
    keep: Tensor
    hard: bool


class TokenGate(Part):
    """Gate slots: ``forward(x, ctx) -> (GateDecision or None, ctx)``; None keeps
    every token.

    Declared:
        slot: 'mlp_gate' (decides on the tokens entering the MLP) or 'attn_gate'
            (decides on the block input, for attention and, with ``gates_mlp``, the MLP).
        gates_mlp: an attention gate whose decision also gates the MLP.
        per_sample: decides per sample (B,) instead of per token (B, N): skips whole
            layers.
        mask_name: under which name the block records the decision in ``ctx.masks``;
            by default what it skips ('mlp', 'attn', 'block' for both, 'layer').
    """
    slot: str = 'mlp_gate'
    gates_mlp: bool = False
    per_sample: bool = False

    @property
    def mask_name(self) -> str:
        if self.per_sample:
            return 'layer'
        if self.slot == 'mlp_gate':
            return 'mlp'
        return 'block' if self.gates_mlp else 'attn'

    def forward(self, x: Tensor, ctx: TokenContext
                ) -> Tuple[Optional[GateDecision], TokenContext]:
        raise NotImplementedError


class Adapter(Part):
    """Adapter slot: ``forward(x, ctx) -> Tensor`` added to the block output in
    parallel with the MLP, on every token."""

    def forward(self, x: Tensor, ctx: TokenContext) -> Tensor:
        raise NotImplementedError


class AuxLossTerm(nn.Module):
    """A backbone's ``aux_losses`` entry: ``forward(ctx, backbone) -> {name: tensor}``
    computed from one forward's context (keys without 'loss' are only logged)."""

    def setup(self, backbone: 'ComposableViT') -> None:
        """Called once the backbone is built, for checks that need all of it."""

    def forward(self, ctx: TokenContext, backbone: nn.Module):
        raise NotImplementedError


#: slot name -> the base class its part must subclass
SLOT_BASES = dict(attn_cfg=AttentionPart, mlp_cfg=MlpPart, merger=TokenReducer,
                  mlp_gate=TokenGate, attn_gate=TokenGate, adapter=Adapter)
