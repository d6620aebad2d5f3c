"""An optimizer-wrapper constructor that walks only trainable parameters.

mmengine's ``DefaultOptimWrapperConstructor`` visits every parameter once a
``paramwise_cfg`` is set (PYRA's recipe sets one: no weight decay on biases and 1-D
parameters) and logs one warning per frozen parameter ("... is skipped since its
requires_grad=False"): 522 lines for a frozen ViT-S with LoRA. A frozen backbone is the
point of PEFT, not a mistake, so this constructor never shows the frozen parameters to
the parent: fully frozen sub-modules are pruned, and a module's own frozen parameters
(LoRA's pretrained weight next to its trainable A/B) are hidden while the parent builds
its groups. The groups built are exactly the parent's minus the frozen entries it skips.
"""
from typing import List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

NAME = 'TrainableOnlyOptimWrapperConstructor'


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name=NAME, force=True)
class TrainableOnlyOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` without the frozen-parameter warnings."""

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[object] = None) -> None:
        if not any(p.requires_grad for p in module.parameters()):
            return  # nothing to optimise below this module
        own = module._parameters
        saved = dict(own)  # restored in its order: state_dict keys keep their order
        for key, param in saved.items():
            if param is not None and not param.requires_grad:
                del own[key]
        try:
            super().add_params(params, module, prefix, is_dcn_module)
        finally:
            own.clear()
            own.update(saved)
