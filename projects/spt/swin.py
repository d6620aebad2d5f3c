"""SPTSwin: mmpretrain's SwinTransformer tuned with SPT (thesis Table 2.3, Swin-B on
VTAB-1k). The constructor builds the SPT structure from the allocation file, like
SPTViT, so the optimizer and the DDP wrapper see exactly the allocated parameters.
"""
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_with_prefix
from mmpretrain.models import SwinTransformer
from mmpretrain.registry import MODELS

from .mixin import SPTMixin


@MODELS.register_module()
class SPTSwin(SPTMixin, SwinTransformer):
    """SwinTransformer with SPT-LoRA / SPT-Adapter.

    Args:
        spt_cfg: as for :class:`SPTViT` (``allocation``, ``budget``, ``structured``,
            ``rule``, ``sensitivity``); the units are listed by
            :func:`projects.spt.units.swin_units`.
        **kwargs: SwinTransformer arguments.

    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` loads an
    mmpretrain-format Swin checkpoint strictly (every pretrained tensor must be
    present, no foreign key), which mmengine's non-strict ``Pretrained`` init does not.
    """

    PLAIN_TYPE = 'SwinTransformer'

    def __init__(self, spt_cfg: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self._setup_spt(spt_cfg)

    def train(self, mode: bool = True) -> 'SPTSwin':
        super().train(mode)  # mmpretrain's Swin.train() returns None
        return self

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        path, prefix = cfg['checkpoint'], cfg.get('prefix')
        if prefix:
            state = _load_checkpoint_with_prefix(prefix, path, map_location='cpu')
        else:
            ckpt = _load_checkpoint(path, map_location='cpu')
            state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        state = dict(state)
        last = f'norm{len(self.stages) - 1}.'
        for key in [k for k in state if k.startswith('norm.')]:  # old single final norm
            state[last + key[len('norm.'):]] = state.pop(key)
        # relative_position_index buffers are dropped (and rebuilt) when the bias
        # tables are resized to another window; attn masks are not saved
        self.load_plain_state_dict(state, path, may_miss=('relative_position_index',))
        self._is_init = True
