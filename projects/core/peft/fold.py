"""Folding every foldable update of a model (or of a backbone) at once: in place for
timing and deployment in the same process (:func:`fold_in_place`, its inverse
:func:`unfold_in_place`), or as the state dict of the plain model
(:func:`merged_state_dict`, which ``tools/model_converters/fold_peft.py`` and ESTA's
stitch export write). The modules are found by the one interface,
:class:`~projects.core.peft.foldable.Foldable`; nothing is matched by name.
"""
from typing import Dict

from torch import Tensor, nn

from .foldable import CannotFoldError, Foldable, NothingToFoldError


def _all_foldable(model: nn.Module) -> Dict[str, Foldable]:
    found = {n: m for n, m in model.named_modules() if isinstance(m, Foldable)}
    nested = [n for n in found for other in found if other != n and n.startswith(other + '.')]
    if nested:
        raise TypeError(f'foldable modules nested in foldable modules: {nested[:3]}; a '
                        'foldable module must own its update (fold the outer one).')
    return found


def foldable_modules(model: nn.Module) -> Dict[str, Foldable]:
    """``{name: module}`` of every foldable module of ``model`` that has an update
    (merged or not)."""
    return {n: m for n, m in _all_foldable(model).items() if m.merged or m.delta_weights()}


def _checked(model: nn.Module, missing_ok: bool) -> Dict[str, Foldable]:
    """The modules to fold, after refusing a model that cannot be folded."""
    blocked = {n: m.fold_blocker() for n, m in _all_foldable(model).items()
               if m.fold_blocker()}
    if blocked:
        names = list(blocked)
        raise CannotFoldError(f'{names[:3]}{"..." if len(names) > 3 else ""}: '
                              f'{next(iter(blocked.values()))}')
    modules = foldable_modules(model)
    if not modules and not missing_ok:
        raise NothingToFoldError(
            f'{type(model).__name__} has no parameter-efficient update to fold (no LoRA, '
            'SPT-LoRA or sparse delta): it already is a plain model.')
    return modules


def fold_in_place(model: nn.Module, missing_ok: bool = False) -> int:
    """Merge every foldable update of ``model`` into its weights; returns how many
    modules. Raises :class:`NothingToFoldError` when there is none (unless
    ``missing_ok``, then 0) and :class:`CannotFoldError` before touching any weight
    when one cannot be folded (SPT-Adapter)."""
    modules = _checked(model, missing_ok)
    for module in modules.values():
        module.merge()
    return len(modules)


def unfold_in_place(model: nn.Module) -> int:
    """Undo :func:`fold_in_place` (to float rounding); returns how many modules
    were merged."""
    merged = [m for m in _all_foldable(model).values() if m.merged]
    for module in merged:
        module.unmerge()
    return len(merged)


def merged_state_dict(model: nn.Module, missing_ok: bool = False) -> Dict[str, Tensor]:
    """The state dict of ``model`` with every foldable update folded in and its
    tensors dropped: it loads strictly into the same model built without the method
    (the backbone's ``plain_backbone_cfg``). ``missing_ok``: a model without updates
    gives a copy of its state dict instead of :class:`NothingToFoldError`."""
    modules = _checked(model, missing_ok)
    owned, merged = set(), {}
    for name, module in modules.items():
        lead = f'{name}.' if name else ''
        owned.update(lead + k for k in module.state_dict())
        merged.update({lead + k: v for k, v in module.merged_state_dict().items()})
    state = {}
    for key, value in model.state_dict().items():  # the model's key order
        if key in merged:
            state[key] = merged[key]
        elif key not in owned:
            state[key] = value.detach().clone()
    return state
