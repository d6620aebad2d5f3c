"""SPTRunner: ``tools/train.py`` on an SPT config computes the allocation first when
its cache file does not exist (one command), then builds the SPT model from it.

The sensitivity pass runs inside :meth:`build_model`, i.e. after the distributed
environment, the seed and the default scope are set up and *before* the real model,
the DDP wrapper and the optimizer exist. Every rank scores its share of the C samples
on the plain backbone (``PLAIN_TYPE`` of the SPT backbone class: PYRAViT for SPTViT,
SwinTransformer for SPTSwin; same config, pretrained weights loaded), the sums are
all-reduced, rank 0 allocates and writes the cache, and after a barrier every rank
builds SPTViT from the same file (a shared file system is assumed, as for mmengine's
checkpoints). An existing cache is reused when its key (model, data, sensitivity and
allocation settings) matches, and is a clear error otherwise.

The pass runs on the runner's device (``mmengine.device.get_device()``, where
``Runner.wrap_model`` puts the real model: the rank's GPU under DDP); the data follow
the model through its data preprocessor. The allocation file is written atomically
(``cache.save_allocation``), so a run killed during the pass or the write leaves no
partial file and the next start recomputes it.
"""
import copy
import os.path as osp
import time
from typing import Dict, Optional, Union

import torch
from mmengine.device import get_device
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.registry import DATASETS, FUNCTIONS, MODELS, RUNNERS
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from .allocation import allocate
from .cache import load_allocation, make_key, save_allocation
from .mixin import check_spt_cfg
from .sensitivity import accumulate_sensitivity, sensitivity_batches
from .units import backbone_units, scored_params, scores_per_unit

SENSITIVITY_DEFAULTS = dict(num_samples=800, batch_size=32, train_mode=False)
ALLOCATION_KEYS = ('budget', 'rule', 'alpha', 'beta', 'match_budget', 'structured_only')


def _plain(obj):
    """Config objects -> plain dicts/lists (for keys)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _checkpoint_id(path) -> str:
    if isinstance(path, str) and osp.isfile(path):
        return f'{path} ({osp.getsize(path)} bytes)'
    return str(path)


def spt_settings(backbone_cfg: dict) -> Dict:
    spt = backbone_cfg['spt_cfg']
    structured = check_spt_cfg(spt)
    sens = dict(SENSITIVITY_DEFAULTS, **(spt.get('sensitivity') or {}))
    structured = {k: structured[k] for k in ('type', 'rank')}
    alloc = {k: spt[k] for k in ALLOCATION_KEYS if k in spt}
    if 'budget' not in alloc:
        raise ValueError('spt_cfg.budget (number of trainable parameters) is required.')
    return dict(structured=structured, sensitivity=sens, allocation=alloc)


def allocation_key(model_cfg: dict, dataset_cfg: dict) -> tuple:
    """(key, info) identifying an allocation: model (without SPT options), pretrained
    checkpoint, training data, sensitivity and allocation settings."""
    model = _plain(copy.deepcopy(model_cfg))
    backbone = model['backbone']
    settings = spt_settings(backbone)
    backbone.pop('spt_cfg')
    init = backbone.get('init_cfg') or {}
    if isinstance(init, dict) and 'checkpoint' in init:
        init['checkpoint'] = _checkpoint_id(init['checkpoint'])
    info = dict(model=model, data=_plain(dataset_cfg), sensitivity=settings['sensitivity'],
                allocation=dict(settings['allocation'],
                                structured_type=settings['structured']['type'],
                                rank=settings['structured']['rank']))
    return make_key(info)


def spt_backbone_class(backbone_cfg: dict) -> type:
    """The registered SPT backbone class of a config (in the current default scope)."""
    with MODELS.switch_scope_and_registry(None) as registry:
        cls = registry.get(backbone_cfg['type'])
    if cls is None or not hasattr(cls, 'plain_backbone_cfg'):
        raise TypeError(f"{backbone_cfg['type']} is not an SPT backbone (SPTViT, SPTSwin); "
                        'spt_cfg needs one.')
    return cls


def scoring_model_cfg(model_cfg: dict) -> dict:
    """The same model with the plain backbone (nothing frozen, no adapters)."""
    cfg = copy.deepcopy(model_cfg)
    cfg['backbone'] = spt_backbone_class(cfg['backbone']).plain_backbone_cfg(cfg['backbone'])
    return cfg


Device = Union[str, torch.device]


def compute_allocation(model_cfg: dict, dataloader_cfg: dict, path: str, key: str,
                       info: str, logger='current', device: Optional[Device] = None) -> None:
    """Sensitivity pass + allocation on ``device`` (default: CPU); rank 0 writes
    ``path``."""
    rank, world = get_dist_info()
    settings = spt_settings(model_cfg['backbone'])
    sens = settings['sensitivity']
    start = time.perf_counter()
    model = MODELS.build(scoring_model_cfg(model_cfg))
    model.init_weights()
    if device is not None:
        # an mmengine model's .to() also points its data preprocessor at the device,
        # which then moves every batch there
        model = model.to(device)
    dataset_cfg = copy.deepcopy(dataloader_cfg['dataset'])
    dataset = DATASETS.build(dataset_cfg) if isinstance(dataset_cfg, dict) else dataset_cfg
    collate = dataloader_cfg.get('collate_fn', dict(type='pseudo_collate'))
    collate_fn = FUNCTIONS.get(collate['type']) if isinstance(collate, dict) else collate
    batches = sensitivity_batches(sens['num_samples'], sens['batch_size'], len(dataset),
                                  rank, world)
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn,
                        num_workers=0)
    units = backbone_units(model.backbone)
    params = scored_params(units, 'backbone.')
    print_log(f'SPT: computing sensitivity of {len(units)} tensors over '
              f'{sens["num_samples"]} samples (batch {sens["batch_size"]}, '
              f'{world} process(es)) on {_device_name(model)} -> {path}', logger)
    scores, seen = accumulate_sensitivity(model, loader, params,
                                          train_mode=sens['train_mode'])
    unit_scores = scores_per_unit(units, scores, 'backbone.')
    seconds = time.perf_counter() - start
    if rank == 0:
        alloc = allocate(unit_scores, units, structured=settings['structured']['type'],
                         rank=settings['structured']['rank'], **settings['allocation'])
        alloc.update(key=key, key_info=info, num_samples=seen,
                     sensitivity_seconds=seconds)
        save_allocation(path, alloc)
        print_log(f'SPT: allocation saved to {path}: {alloc["cost"]} trainable '
                  f'(tau={alloc["tau"]}, {len(alloc["structured"])} structured matrices, '
                  f'sensitivity pass {seconds:.1f} s)', logger)
    del model, scores, unit_scores
    if world > 1:
        barrier()


def _device_name(model: torch.nn.Module) -> str:
    param = next(model.parameters(), None)
    return str(param.device) if param is not None else 'cpu'


def ensure_allocation(model_cfg: dict, dataloader_cfg: dict, logger='current',
                      device: Optional[Device] = None) -> bool:
    """Make sure the allocation file of an SPT model config exists and matches,
    computing it on ``device`` when needed. Returns True when it was computed now,
    False when a cached one is reused (or the model is not an SPT model)."""
    backbone = model_cfg.get('backbone') if isinstance(model_cfg, dict) else None
    if not isinstance(backbone, dict) or 'spt_cfg' not in backbone:
        return False
    if dataloader_cfg is None:
        raise ValueError('SPTRunner needs train_dataloader to compute the sensitivity.')
    path = backbone['spt_cfg']['allocation']
    key, info = allocation_key(model_cfg, dataloader_cfg['dataset'])
    if osp.exists(path):
        load_allocation(path, key, info)
        print_log(f'SPT: reusing the cached allocation {path}', logger)
        return False
    compute_allocation(model_cfg, dataloader_cfg, path, key, info, logger, device)
    return True


@RUNNERS.register_module()
class SPTRunner(Runner):
    """Runner that computes (or reuses) the SPT allocation before building the model.
    Set ``runner_type = 'SPTRunner'`` in an SPT config."""

    def scoring_device(self) -> str:
        """Where the sensitivity pass runs: the device ``Runner.wrap_model`` moves
        the real model to (``'cuda'``: the current GPU of this rank under DDP; else
        npu / mlu / mps / cpu). A string, as mmengine passes it to ``.to()``."""
        return get_device()

    def build_model(self, model):
        if isinstance(model, dict):
            train_loader = self._train_dataloader
            loader_cfg = train_loader if isinstance(train_loader, dict) else None
            # the pass must not shift the training RNG (CPU and, when used, CUDA)
            with torch.random.fork_rng(devices=self._rng_devices()):
                ensure_allocation(model, loader_cfg, logger='current',
                                  device=self.scoring_device())
        return super().build_model(model)

    def _rng_devices(self) -> list:
        """The CUDA device whose RNG the pass may use (none off CUDA)."""
        return [torch.cuda.current_device()] if self.scoring_device() == 'cuda' else []
