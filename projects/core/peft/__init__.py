"""Parameter-efficient fine-tuning shared by the methods: parameter roles declared by
the modules (:mod:`.roles`), the one low-rank update (:mod:`.low_rank`), the foldable
interface (:mod:`.foldable`), folding a whole model (:mod:`.fold`) and LoRA on q/k/v
(:mod:`.lora`).

Fold every update of a trained model in place (LoRA, SPT-LoRA, sparse deltas, ESTA's
stitching LoRA) before timing it as deployed::

    from projects.core.peft import fold_in_place
    fold_in_place(model, missing_ok=True)  # returns how many layers were folded
"""
from .fold import fold_in_place, foldable_modules, merged_state_dict, unfold_in_place
from .foldable import CannotFoldError, Foldable, NothingToFoldError
from .low_rank import init_low_rank_, low_rank_delta, low_rank_forward
from .lora import LoRAQKVLinear, fold_lora_state_dict, lora_layers
from .roles import (AddsParameters, freeze_to_declared, new_parameter_names,
                    trainable_when_frozen)

__all__ = ['fold_in_place', 'foldable_modules', 'merged_state_dict', 'unfold_in_place',
           'CannotFoldError', 'Foldable', 'NothingToFoldError', 'init_low_rank_',
           'low_rank_delta', 'low_rank_forward', 'LoRAQKVLinear', 'fold_lora_state_dict',
           'lora_layers', 'AddsParameters', 'freeze_to_declared', 'new_parameter_names',
           'trainable_when_frozen']
