"""The CPU / single-process fixes of :mod:`projects.core.runtime.compat` for every runner built
from a config, not only in ``tools/train.py`` / ``tools/test.py``.

Every OpenMMLab entry point builds its runner with ``Runner.from_cfg`` (directly or via
``RUNNERS.build``): mmseg's / mmpretrain's ``tools/train.py`` and ``tools/test.py`` that
``mim train/test`` run, ``tools/run_embedded_default.py`` and our tools. A hook cannot
do it: hooks are built after mmengine has started the process group (``init_dist``,
which calls ``torch.cuda.set_device``) and built the model. So importing
:mod:`projects` wraps ``Runner.from_cfg`` once (:func:`patch_runner_from_cfg`,
idempotent); the wrapper adapts a copy of the config with :func:`adapt_runner_cfg`,
starts the gloo process group for a CPU ``--launcher pytorch`` run, then calls
mmengine's own ``from_cfg``:

* one process, or no CUDA: SyncBN / MMSyncBN -> BN (mmcv's ``MMSyncBN`` cannot even be
  built without a process group) and ``sync_bn`` dropped;
* no CUDA and distributed: ``nccl`` -> ``gloo`` and DDP without ``device_ids``.

With CUDA and several processes nothing changes. Runners constructed directly
(``Runner(model=..., ...)``) and subclasses that override ``from_cfg`` are not adapted.
"""
import copy
import functools
import logging
from typing import Any, List, Optional

import torch
from mmengine.runner import Runner

from ..engine.cli import log_notes
from .compat import init_cpu_dist, prepare_runtime_cfg, resolve_dist_backend

_MARK = '_mmadapt_adapts_cfg'


def adapt_runner_cfg(cfg: Any, cuda: Optional[bool] = None) -> List[str]:
    """Adapt a runner config (``Config`` or dict) in place to this machine; returns
    human-readable notes of what changed (empty when nothing did)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    launcher = cfg.get('launcher', 'none')
    notes = prepare_runtime_cfg(cfg, launcher, cuda)
    if not cuda and launcher != 'none':
        # mmengine's from_cfg defaults to nccl when env_cfg is absent
        before = ((cfg.get('env_cfg', None) or {}).get('dist_cfg', None) or {}).get(
            'backend', 'nccl')
        if resolve_dist_backend(cfg, cuda=False) != before:
            notes.append(f'dist backend {before} -> gloo (no CUDA device)')
    return notes


def is_patched() -> bool:
    return getattr(Runner.__dict__['from_cfg'].__func__, _MARK, False)


def patch_runner_from_cfg() -> bool:
    """Wrap ``Runner.from_cfg`` (once per process); returns whether it patched now."""
    if is_patched():
        return False
    original = Runner.__dict__['from_cfg'].__func__

    @functools.wraps(original)
    def from_cfg(cls, cfg):
        cfg = copy.deepcopy(cfg)  # mmengine copies too; the caller's config stays as is
        log_notes(adapt_runner_cfg(cfg), logging.WARNING)
        launcher = cfg.get('launcher', 'none')
        if launcher != 'none' and not torch.cuda.is_available():
            dist_cfg = cfg['env_cfg']['dist_cfg']
            init_cpu_dist(launcher, dist_cfg['backend'], dist_cfg.get('timeout', None))
        return original(cls, cfg)

    setattr(from_cfg, _MARK, True)
    Runner.from_cfg = classmethod(from_cfg)
    return True


patch_runner_from_cfg()
