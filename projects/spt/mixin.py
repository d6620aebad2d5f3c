"""What every SPT backbone shares: build the SPT structure from the allocation file in
the constructor, freeze the rest, list the SPT parameters, fold for deployment.

Trainability and folding come from the modules' declarations only: the SPT layers are
:class:`~projects.core.peft.foldable.Foldable` (their children -- sparse values, LoRA,
Adapter -- are new and trainable), other parts declare theirs with ``AddsParameters``
(PYRA's generators), and :func:`~projects.core.peft.fold.fold_in_place` /
:func:`~projects.core.peft.fold.merged_state_dict` fold them like every other method.

A concrete SPT backbone subclasses this mixin and its plain backbone (``SPTViT`` =
``ComposableViT``, ``SPTPYRAViT`` = ``PYRAViT``, ``SPTSwin`` = mmpretrain's ``SwinTransformer``), sets ``PLAIN_TYPE`` to
the registry name of the plain backbone and calls :meth:`_setup_spt` at the end of its
``__init__``. Parameter names of the pretrained tensors stay those of the plain
backbone, so its checkpoints load unchanged and :meth:`folded_state_dict` loads
strictly into the plain backbone.
"""
import copy
from typing import Dict

from torch import Tensor, nn

from ..core.peft.fold import fold_in_place, merged_state_dict
from ..core.peft.roles import freeze_to_declared
from .apply import apply_allocation, check_allocation
from .cache import load_allocation
from .layers import SPTLayer
from .structured import STRUCTURED_TYPES
from .units import backbone_units

STRUCTURED_DEFAULTS = dict(type='lora', rank=8, scale=1.0, dropout=0.1)


def check_spt_cfg(spt_cfg) -> dict:
    if not isinstance(spt_cfg, dict) or 'allocation' not in spt_cfg:
        raise ValueError('spt_cfg must be a dict with an `allocation` file path.')
    structured = dict(STRUCTURED_DEFAULTS, **(spt_cfg.get('structured') or {}))
    if structured['type'] not in STRUCTURED_TYPES:
        raise ValueError(f'spt_cfg.structured.type must be one of {STRUCTURED_TYPES}, '
                         f"got {structured['type']!r}.")
    return structured


class SPTMixin:
    """SPT structure, freezing and folding for a backbone subclass."""

    PLAIN_TYPE: str = ''
    #: config keys of the plain backbone to reset when exporting (see plain_backbone_cfg)
    PLAIN_OVERRIDES: dict = {}

    def _setup_spt(self, spt_cfg: dict) -> None:
        structured = check_spt_cfg(spt_cfg)
        self.spt_cfg = dict(spt_cfg)
        self.plain_keys = set(self.state_dict())
        units = backbone_units(self)
        alloc = load_allocation(spt_cfg['allocation'])
        check_allocation(alloc, units, spt_cfg['allocation'])
        apply_allocation(self, units, alloc, structured, spt_cfg['allocation'])
        self.allocation_key = alloc['key']
        self.allocation_summary = {k: alloc[k] for k in (
            'budget', 'tau', 'rule', 'structured_type', 'rank', 'cost', 'structured',
            'full_vectors') if k in alloc}
        self.allocation_summary['sparse'] = {k: int(v.numel())
                                             for k, v in alloc['sparse'].items()}
        # train what the modules declare: the SPT layers' additions and any other
        # declared part (PYRA's generators, outside the SPT budget)
        freeze_to_declared(self)

    def spt_parameters(self) -> Dict[str, nn.Parameter]:
        """The SPT-trainable parameters (sparse values, LoRA, Adapter), by name."""
        names = {f'{layer_name}.{n}' for layer_name, layer in self.spt_layers().items()
                 for n in layer.new_parameter_names()}
        return {n: p for n, p in self.named_parameters() if n in names}

    def plain_state_dict(self) -> Dict[str, Tensor]:
        """The pretrained tensors only, under the plain backbone's names."""
        return {k: v for k, v in self.state_dict().items() if k in self.plain_keys}

    def load_plain_state_dict(self, state: Dict[str, Tensor], source: str = '',
                              may_miss=()) -> None:
        """Load a plain-backbone state dict; every key of it must exist here and every
        plain key must be given (except ``may_miss`` substrings), else a clear error."""
        result = nn.Module.load_state_dict(self, state, strict=False)
        missing = sorted(k for k in result.missing_keys
                         if k in self.plain_keys and not any(s in k for s in may_miss))
        unexpected = sorted(result.unexpected_keys)
        if missing or unexpected:
            raise KeyError(
                f'checkpoint {source} does not match {type(self).__name__}: missing '
                f'{missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} '
                f'({len(unexpected)}). Check init_cfg.prefix and that the checkpoint is '
                f'a {self.PLAIN_TYPE} of the same architecture.')

    # --------------------------------------------------------------- deployment
    def spt_layers(self) -> Dict[str, SPTLayer]:
        return {n: m for n, m in self.named_modules() if isinstance(m, SPTLayer)}

    def merge_spt(self) -> int:
        """Fold sparse deltas and LoRA into the frozen weights in place (what
        :func:`~projects.core.peft.fold.fold_in_place` does for every method)."""
        return fold_in_place(self)

    def folded_state_dict(self) -> Dict[str, Tensor]:
        """State dict of the plain backbone (``plain_backbone_cfg``) with every SPT
        update folded in."""
        return merged_state_dict(self)

    @classmethod
    def plain_backbone_cfg(cls, cfg: dict) -> dict:
        """The config of the plain backbone that :meth:`folded_state_dict` loads into."""
        out = copy.deepcopy(cfg)
        out.pop('spt_cfg', None)
        scope, _, _ = str(out['type']).rpartition('.')
        out['type'] = f'{scope}.{cls.PLAIN_TYPE}' if scope else cls.PLAIN_TYPE
        out.update(cls.PLAIN_OVERRIDES)
        return out
