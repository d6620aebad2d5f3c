"""Parameter roles of the ViT's parts: the declarations live in
:mod:`projects.core.peft.roles` (shared with the low-rank layers there); this module
keeps the import path every part uses."""
from ..core.peft.roles import (AddsParameters, freeze_to_declared,  # noqa: F401
                               new_parameter_names, trainable_when_frozen)

__all__ = ['AddsParameters', 'freeze_to_declared', 'new_parameter_names',
           'trainable_when_frozen']
