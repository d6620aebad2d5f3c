"""The foldable interface: a module whose added parameters are a *linear* update of
some of its own tensors, so the update can be added into them (merged) for
deployment and subtracted again (unmerged) to continue training.

As in HF PEFT's LoRA layer, one method, :meth:`Foldable.delta_weights`, is the only
source of the dense update; :meth:`merge`, :meth:`unmerge` and
:meth:`merged_state_dict` (the module's tensors as the plain module would hold them)
all read it. A forward consults :attr:`merged` and skips the update once it is in
the weights.

Implemented by :class:`~projects.core.peft.lora.LoRAQKVLinear`, the SPT layers
(``projects/spt/layers.py``: SPT-LoRA and sparse deltas) and ESTA's
``StitchingLayer``; model-wide folding is in :mod:`projects.core.peft.fold`.

Parameter roles follow the structure by default: a foldable module's own direct
tensors (``weight``, ``bias``, ``gamma``) are the pretrained ones it updates, its child
modules hold the update. A module whose own tensors are new too (ESTA's stitching
layer) says so by overriding :meth:`new_parameter_names`.
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor

from .roles import AddsParameters


class NothingToFoldError(ValueError):
    """A model without parameter-efficient updates to fold (it already is plain)."""


class CannotFoldError(ValueError):
    """A model whose update is not linear in the weights (SPT-Adapter): it cannot be
    folded and is deployed as trained."""


class Foldable(AddsParameters):
    """Mixin for modules with a linear, foldable update of their own tensors."""

    merged: bool = False

    def delta_weights(self) -> Dict[str, Tensor]:
        """``{name of an own tensor: its dense update}`` (names relative to this
        module); empty when the module currently adds nothing."""
        raise NotImplementedError

    def fold_blocker(self) -> Optional[str]:
        """Why this module cannot be folded (a non-linear part), or None."""
        return None

    # ----------------------------------------------------------------- roles
    def new_parameter_names(self) -> List[str]:
        """The parameters of the child modules: the update, not the pretrained
        tensors it is added to."""
        return [f'{child}.{n}' for child, module in self.named_children()
                for n, _ in module.named_parameters()]

    def folded_away_names(self) -> List[str]:
        """State-dict names (relative) that folding absorbs: the plain module lacks
        them. By default every state entry of the child modules."""
        return [f'{child}.{n}' for child, module in self.named_children()
                for n in module.state_dict()]

    # --------------------------------------------------------------- folding
    def _check_foldable(self) -> None:
        reason = self.fold_blocker()
        if reason:
            raise CannotFoldError(f'{type(self).__name__}: {reason}')

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the tensors in place (the speed of the plain module)."""
        if self.merged:
            return
        self._check_foldable()
        for leaf, delta in self.delta_weights().items():
            target = getattr(self, leaf)
            target.add_(delta.to(target.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update again (the tensors return to float rounding of their
        values before :meth:`merge`)."""
        if not self.merged:
            return
        for leaf, delta in self.delta_weights().items():
            target = getattr(self, leaf)
            target.sub_(delta.to(target.dtype))
        self.merged = False

    @torch.no_grad()
    def merged_state_dict(self) -> Dict[str, Tensor]:
        """This module's state as the plain module holds it: the update folded into
        the tensors (unless already merged), the update's own entries dropped."""
        self._check_foldable()
        drop = set(self.folded_away_names())
        state = {k: v.detach().clone() for k, v in self.state_dict().items() if k not in drop}
        if not self.merged:
            for leaf, delta in self.delta_weights().items():
                state[leaf] = state[leaf] + delta.detach().to(state[leaf].dtype)
        return state
