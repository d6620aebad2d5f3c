"""PYRAViT: the ComposableViT with ToMe / PYRA token merging switched on by three
options, for mmpretrain classification and mmseg dense prediction.

It only turns ``merge_mode`` / ``merge_schedule`` / ``prop_attn`` / ``pyra_cfg`` into
block configuration: each layer's merger slot gets a ``TokenMerger`` (with a
``PYRAModulation`` under 'pyra') that owns its share of the schedule, under whatever
``block_cfg`` / ``block_overrides`` add. Dense outputs are unmerged by the ViT itself:
at every ``out_indices`` layer each original patch receives its merged group's token,
so heads get the full H/P x W/P grid.
"""
from typing import List, Optional, Sequence, Union

from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS

from ..vit.backbone import ComposableViT, _pair, arch_spec, check_divisible
from ..vit.block_cfgs import BlockCfgSpec, layer_cfgs, merge_block_cfg
from .schedules import ScheduleSpec, rescale_schedule, resolve_schedule, token_counts

# 'drop' is no method: the drop-only speed limit of merging (``TokenDropper``)
MERGE_MODES = ('none', 'tome', 'pyra', 'drop')
#: the options PYRAViT adds to ComposableViT
MERGE_OPTIONS = ('merge_mode', 'merge_schedule', 'prop_attn', 'pyra_cfg')


@SEG_MODELS.register_module()
@PRETRAIN_MODELS.register_module()
class PYRAViT(ComposableViT):
    """ComposableViT with ToMe/PYRA token merging.

    Args:
        merge_mode: 'none', 'tome' or 'pyra' ('drop': the speed limit of merging, no
            matching -- a benchmark baseline, see ``TokenDropper``).
        merge_schedule: per-layer r list, int, (r, inflect), or 'low'/'high' (PYRA's
            presets), for the build-time ``img_size``. At another token count each
            layer merges the same fraction of its incoming tokens (rounded, capped at
            half of them) and PYRA's rank weights are resampled -- or use slide
            inference at the crop size.
        prop_attn: proportional attention (log size added to the logits), as ToMe/PYRA.
        pyra_cfg: options of :class:`PYRAModulation` (init_r, weighted_info, norm_affine).
        **kwargs: :class:`~projects.vit.backbone.ComposableViT` arguments.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 with_cls_token: bool = True,
                 merge_mode: str = 'none',
                 merge_schedule: ScheduleSpec = None,
                 prop_attn: bool = True,
                 pyra_cfg: Optional[dict] = None,
                 block_cfg: BlockCfgSpec = None,
                 **kwargs) -> None:
        if merge_mode not in MERGE_MODES:
            raise ValueError(f'merge_mode must be one of {MERGE_MODES}, got {merge_mode!r}.')
        if merge_mode == 'none' and merge_schedule not in (None, 0):
            raise ValueError("merge_schedule is set but merge_mode='none'; set merge_mode "
                             "to 'tome' or 'pyra', or drop the schedule.")
        spec = arch_spec(arch)
        num_layers = spec['num_layers']
        size = _pair(img_size)
        for side in size:  # the schedule is made for the build grid
            check_divisible(side, patch_size)
        num_patches = (size[0] // patch_size) * (size[1] // patch_size)
        family = 'deit' if str(arch).startswith('deit') else 'vit'
        schedule = resolve_schedule(merge_schedule if merge_mode != 'none' else None,
                                    num_layers, num_patches, with_cls_token, family)
        counts = token_counts(schedule, num_patches + int(with_cls_token), with_cls_token)
        ours = [dict(attn_cfg=dict(prop_attn=prop_attn),
                     merger=self._merger_cfg(merge_mode, r, t, pyra_cfg))
                for r, t in zip(schedule, counts)]
        block_cfg = [merge_block_cfg(base, layer)
                     for base, layer in zip(ours, layer_cfgs(block_cfg, num_layers))]
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size,
                         with_cls_token=with_cls_token, block_cfg=block_cfg, **kwargs)
        self.merge_mode = merge_mode
        self.merge_schedule: List[int] = schedule

    @staticmethod
    def _merger_cfg(merge_mode: str, r: int, num_tokens: int,
                    pyra_cfg: Optional[dict]) -> Optional[dict]:
        if merge_mode == 'none':
            return None
        if merge_mode == 'drop':
            return dict(type='TokenDropper', num_merge=r, num_tokens=num_tokens)
        modulation = None
        if merge_mode == 'pyra' and r > 0:
            modulation = dict(type='PYRAModulation', num_merge=r, **(pyra_cfg or {}))
        return dict(type='TokenMerger', num_merge=r, num_tokens=num_tokens,
                    modulation=modulation)

    def runtime_schedule(self, num_patches: int) -> List[int]:
        """Merge counts the layers apply to an input with ``num_patches`` patch tokens
        (what the mergers compute themselves, for cost counting)."""
        base = self.grid[0] * self.grid[1]
        if num_patches == base or not any(self.merge_schedule):
            return self.merge_schedule
        return rescale_schedule(self.merge_schedule, base + int(self.with_cls_token),
                                num_patches + int(self.with_cls_token), self.with_cls_token)
