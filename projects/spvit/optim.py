"""The gate parameter group: SPViT's gate logits get their own learning rate and no
weight decay (official code: a second AdamW with lr ``arc_lr``, wd 0, effectively
constant). One optimizer with a marked group does the same in mmpretrain and mmseg:
this constructor builds it, :class:`~projects.spvit.hook.SPViTSearchHook` holds its
learning rate constant against the weights' schedule (``constant_gate_lr``).
"""
from typing import List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

GATE_FLAG = 'spvit_gate'


def is_gate_name(name: str) -> bool:
    return name.endswith('.theta') and ('.attn.' in name or '.mlp.' in name)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SPViTOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` plus one marked group per gate logit with
    ``lr = gate_lr`` and ``weight_decay = 0``.

    Config: ``optim_wrapper = dict(constructor='SPViTOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.05),
    paramwise_cfg=dict(gate_lr=5e-4, ...))``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        if 'gate_lr' not in paramwise_cfg:
            raise ValueError("SPViTOptimWrapperConstructor: set paramwise_cfg.gate_lr (the "
                             'official arc_lr: 1e-3 DeiT-Ti/B, 5e-4 DeiT-S).')
        self.gate_lr = float(paramwise_cfg.pop('gate_lr'))
        # a non-empty paramwise_cfg makes the parent build one group per parameter
        paramwise_cfg.setdefault('custom_keys', {})
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:
            return
        names = {id(p): n for n, p in module.named_parameters()}
        found = 0
        for group in params:
            if len(group['params']) == 1 and is_gate_name(names.get(id(group['params'][0]), '')):
                group.update(lr=self.gate_lr, weight_decay=0.0, **{GATE_FLAG: True})
                found += 1
        if not found:
            raise ValueError('SPViTOptimWrapperConstructor: the model has no SPViT gate '
                             "(no '*.attn.theta' / '*.mlp.theta'); use the default "
                             'constructor for fine-tuning.')
