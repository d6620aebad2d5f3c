"""AdapterCheckpointHook: mmengine's ``CheckpointHook`` that writes adapter-only
checkpoints (``projects/core/checkpoint/adapter_only.py``): the parameters the modules
declare new or trainable, the buffers and the head, plus which base they belong to.

Usage (every ``CheckpointHook`` option still applies: interval, max_keep_ckpts,
save_best, published_keys, ...)::

    default_hooks = dict(checkpoint=dict(type='AdapterCheckpointHook', interval=1))
    # or on the command line of any config:
    # --cfg-options default_hooks.checkpoint.type=AdapterCheckpointHook

``save_mode='full'`` writes mmengine's full checkpoints (the hook is then
``CheckpointHook``). The optimizer, scheduler, message-hub and RNG entries are kept
unchanged, so ``--resume`` from an adapter-only checkpoint continues exactly as from a
full one; the base comes from the config's ``init_cfg`` checkpoint, checked against the
recorded digest.
"""
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...checkpoint.adapter_only import base_record, to_adapter_checkpoint
from ..ddp import unwrap_model

SAVE_MODES = ('adapter', 'full')


@HOOKS.register_module()
class AdapterCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with ``save_mode``: 'adapter' (default) or 'full'."""

    def __init__(self, *args, save_mode: str = 'adapter', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if save_mode not in SAVE_MODES:
            raise ValueError(f'save_mode must be one of {SAVE_MODES}, got {save_mode!r}.')
        self.save_mode = save_mode
        self._record: Optional[dict] = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        # the base as loaded (init_cfg, or restored by --resume), before any update
        if self.save_mode == 'adapter' and is_main_process():
            self._record = base_record(runner.model)
            print_log(f"save_mode='adapter': checkpoints store {self._record['adapter_keys']}"
                      f" tensors; the {self._record['base_keys']} base tensors come from "
                      f"{[s['checkpoint'] for s in self._record['base_sources']]} "
                      f"(sha256 {self._record['base_sha256'][:12]})", 'current')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.save_mode != 'adapter':
            return
        if self._record is None:  # a save outside training
            self._record = base_record(runner.model)
        to_adapter_checkpoint(checkpoint, unwrap_model(runner.model), self._record)
