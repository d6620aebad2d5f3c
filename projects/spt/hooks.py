"""SPTAllocationHook: logs and saves what SPT allocated, and refuses to resume or
load a checkpoint trained with another allocation.

The SPT structure itself is built in the SPT backbone's constructor (mmengine builds the
optimizer and the DDP wrapper before any hook runs, so a hook must not change the
trainable set). Usage::

    custom_hooks = [dict(type='SPTAllocationHook')]
"""
import logging
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..core.engine.atomic_io import atomic_json_dump
from ..core.engine.ddp import unwrap_model


def _spt_backbone(runner):
    model = unwrap_model(runner.model)
    backbone = getattr(model, 'backbone', model)
    if not hasattr(backbone, 'allocation_key'):
        raise TypeError('SPTAllocationHook needs a model with an SPT backbone (SPTViT, '
                        'SPTSwin).')
    return backbone


@HOOKS.register_module()
class SPTAllocationHook(Hook):
    """Writes ``spt_allocation.json`` to the work dir, logs the trainable set, stores
    the allocation key and summary in every checkpoint (``checkpoint['spt']``)."""

    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        backbone = _spt_backbone(runner)
        spt = backbone.spt_parameters()
        trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
        summary = dict(backbone.allocation_summary, key=backbone.allocation_key,
                       spt_trainable=sum(p.numel() for p in spt.values()),
                       other_trainable_in_backbone=sorted(trainable - set(spt)))
        runner.logger.info(
            f'SPT allocation: {summary["cost"]} (budget {summary["budget"]}), '
            f'{len(summary["structured"])} structured matrices, '
            f'{len(summary["full_vectors"])} whole vectors, {len(summary["sparse"])} '
            f'tensors with sparse entries; {summary["spt_trainable"]} SPT parameters')
        if is_main_process():
            atomic_json_dump(summary, osp.join(runner.work_dir, 'spt_allocation.json'),
                             indent=1)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        backbone = _spt_backbone(runner)
        checkpoint['spt'] = dict(key=backbone.allocation_key,
                                 summary=backbone.allocation_summary)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('spt')
        if saved is None:
            runner.logger.log(logging.WARNING, 'SPTAllocationHook: the loaded checkpoint '
                              'has no SPT allocation record; cannot verify it.')
            return
        key = _spt_backbone(runner).allocation_key
        if saved['key'] != key:
            raise ValueError(
                'the checkpoint was trained with another SPT allocation (key '
                f'{saved["key"][:12]}) than the model (key {key[:12]}); its sparse values '
                'would land on other weights. Use the allocation file of that run.')
