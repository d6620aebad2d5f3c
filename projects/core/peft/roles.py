"""Which parameters a method adds to a pretrained model, declared by the module that
owns them rather than by name patterns kept elsewhere.

A module that adds parameters (LoRA, PYRA's generators, an adapter, a dispatcher, a
gate, an SPT layer's sparse values) inherits :class:`AddsParameters`. Three readers ask
the declarations and nothing else:

- a backbone freezing itself keeps :func:`trainable_when_frozen` trainable;
- the pretrained-checkpoint loader lets :func:`new_parameter_names` be missing;
- the adapter-only checkpoint (``projects/core/checkpoint/adapter_only.py``) saves them.

It lives in ``core`` (``projects.vit.param_roles`` re-exports it) so that the low-rank
layers of :mod:`projects.core.peft` can declare their roles without importing the ViT.
"""
from typing import Iterable, Set

from torch import nn


class AddsParameters:
    """Mixin for modules whose parameters a pretrained checkpoint does not have.

    By default every parameter of the module is new and trains when the backbone is
    frozen; override :meth:`new_parameter_names` when only some are (LoRA keeps the
    pretrained ``weight`` / ``bias`` of its linear layer), and
    :meth:`trainable_parameter_names` when a new parameter should stay frozen.
    """

    def new_parameter_names(self) -> Iterable[str]:
        """Names relative to this module."""
        return [name for name, _ in self.named_parameters()]

    def trainable_parameter_names(self) -> Iterable[str]:
        return self.new_parameter_names()


def _collect(model: nn.Module, method: str) -> Set[str]:
    names: Set[str] = set()
    for prefix, module in model.named_modules():
        if isinstance(module, AddsParameters):
            lead = f'{prefix}.' if prefix else ''
            names.update(lead + n for n in getattr(module, method)())
    return names


def new_parameter_names(model: nn.Module) -> Set[str]:
    """Full names of the parameters of ``model`` that pretrained checkpoints lack."""
    return _collect(model, 'new_parameter_names')


def trainable_when_frozen(model: nn.Module) -> Set[str]:
    """Full names of the parameters of ``model`` that train when it is frozen."""
    return _collect(model, 'trainable_parameter_names')


def freeze_to_declared(model: nn.Module) -> Set[str]:
    """Freeze every parameter of ``model`` except :func:`trainable_when_frozen`;
    returns the names left trainable."""
    keep = trainable_when_frozen(model)
    for name, param in model.named_parameters():
        param.requires_grad = name in keep
    return keep
