"""Compatibility fixes for the pinned stack (torch >= 2.6, mmengine 0.10.7, CPU runs).

Importing :mod:`projects` calls :func:`apply_compat` once; calling it again is a no-op.

1. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and mmengine
   0.10.7 calls ``torch.load(filename, map_location=...)`` without the argument, so
   ``resume`` / ``load_from`` of a full mmengine checkpoint fail with::

       _pickle.UnpicklingError: Weights only load failed. ... Unsupported global:
       GLOBAL mmengine.logging.history_buffer.HistoryBuffer was not an allowed global

   Instead of turning the restricted unpickler off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``)
   we allow exactly the globals that the runner writes (see :data:`SAFE_GLOBAL_NAMES`):
   the message hub's ``HistoryBuffer``, the numpy array / scalar / dtype constructors of
   its numeric histories, and ``builtins.getattr`` -- but the latter only as a stand-in
   that resolves ``HistoryBuffer``'s statistics methods (``HistoryBuffer.__getstate__``
   pickles them as ``getattr(HistoryBuffer, 'mean')``) and rejects everything else. A
   plain ``getattr`` would let a crafted file walk from an allowed class to arbitrary
   code.

2. CPU runs. mmengine's ``pytorch``/``slurm`` launchers call ``torch.cuda.set_device``
   and DDP is built with ``device_ids=[LOCAL_RANK]``; both fail without a GPU.
   SyncBN cannot synchronise CPU tensors. :func:`prepare_runtime_cfg` adapts a config
   for the machine it runs on and :func:`init_cpu_dist` starts a gloo process group;
   ``tools/train.py`` and ``tools/test.py`` use both, and :mod:`.runner_compat` applies
   them to every runner built with ``Runner.from_cfg`` once :mod:`projects` is imported
   (mmseg's / mmpretrain's own tools, ``mim train/test``, scripts).
"""
import atexit
import logging
import os
import pickle
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = [
    'apply_compat', 'SAFE_GLOBAL_NAMES', 'SYNC_BN_TYPES', 'sync_bn_to_bn',
    'revert_sync_batchnorm', 'resolve_dist_backend', 'prepare_runtime_cfg',
    'init_cpu_dist'
]

_APPLIED = False

# Norm-layer ``type`` names (as registered by mmcv) that need a GPU process group:
# 'SyncBN' (torch.nn.SyncBatchNorm) and 'MMSyncBN' (mmcv.ops.SyncBatchNorm). Class
# objects named *SyncBatchNorm (lazy-import configs) are treated the same.
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')

# numpy dtypes of the arrays / scalars found in mmengine checkpoints (message-hub
# histories are float64/int64, metrics can be float32, counters int32, flags bool).
_NUMPY_DTYPE_CODES = ('?', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2',
                      'f4', 'f8')


def _history_buffer():
    from mmengine.logging.history_buffer import HistoryBuffer
    return HistoryBuffer


def _statistics_getattr(obj: Any, name: str) -> Callable:
    """``builtins.getattr`` as seen by the weights-only unpickler.

    Only ``getattr(HistoryBuffer, <statistics method>)`` is resolved, which is what
    ``HistoryBuffer.__getstate__`` writes for its ``statistics_methods`` dict.
    """
    history_buffer = _history_buffer()
    allowed = set(history_buffer._statistics_methods) | {'min', 'max', 'current', 'mean'}
    if obj is history_buffer and isinstance(name, str) and name in allowed:
        return getattr(history_buffer, name)
    raise pickle.UnpicklingError(
        f'weights-only load: getattr({obj!r}, {name!r}) is not allowed; only '
        f'HistoryBuffer statistics methods {sorted(allowed)} are (projects.core.runtime.compat)')


def _safe_globals() -> List[Tuple[Any, str]]:
    """(object, pickled full path) pairs allowed for ``torch.load(weights_only=True)``."""
    multiarray = getattr(np, '_core', None)
    multiarray = multiarray.multiarray if multiarray is not None else np.core.multiarray
    pairs = [
        (_history_buffer(), 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_statistics_getattr, 'builtins.getattr'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    # numpy 2 pickles as numpy._core.multiarray.*, numpy 1 as numpy.core.multiarray.*;
    # accept both so checkpoints written under either version load.
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        pairs.append((multiarray._reconstruct, f'{module}._reconstruct'))
        pairs.append((multiarray.scalar, f'{module}.scalar'))
    # With numpy >= 1.25 a dtype instance is of a per-dtype class (e.g.
    # numpy.dtypes.Float64DType) and the unpickler's BUILD step checks that class.
    for code in _NUMPY_DTYPE_CODES:
        cls = type(np.dtype(code))
        if cls is not np.dtype:
            pairs.append((cls, f'{cls.__module__}.{cls.__qualname__}'))
    return pairs


#: Full paths (as they appear in checkpoints) that :func:`apply_compat` allows.
SAFE_GLOBAL_NAMES: Tuple[str, ...] = ()


def _allow_mmengine_checkpoints() -> None:
    global SAFE_GLOBAL_NAMES
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4: weights_only is not the default
        return
    pairs = _safe_globals()
    add_safe_globals(pairs)
    SAFE_GLOBAL_NAMES = tuple(name for _, name in pairs)


def apply_compat() -> None:
    """Apply the fixes of this module once per process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _allow_mmengine_checkpoints()
    _APPLIED = True


# --------------------------------------------------------------------------- CPU runs


def revert_sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Replace SyncBN layers of a built ``model`` by BatchNorm (mmengine's helper)."""
    from mmengine.model import revert_sync_batchnorm as _revert
    return _revert(model)


def sync_bn_to_bn(cfg: Any) -> int:
    """Rewrite every SyncBN ``type`` (:data:`SYNC_BN_TYPES`) of a config to ``'BN'``.

    Works in place on (nested) dicts / lists, including mmengine ``Config`` /
    ``ConfigDict``. Returns the number of replaced entries.
    """
    count = 0
    if isinstance(cfg, dict) or hasattr(cfg, 'items'):
        norm_type = cfg.get('type', None)
        if norm_type in SYNC_BN_TYPES or (isinstance(norm_type, type) and
                                          norm_type.__name__.endswith('SyncBatchNorm')):
            cfg['type'] = 'BN'
            count += 1
        for value in cfg.values():
            count += sync_bn_to_bn(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            count += sync_bn_to_bn(value)
    return count


def resolve_dist_backend(cfg, cuda: Optional[bool] = None) -> str:
    """Pick the ``env_cfg.dist_cfg.backend`` that can work on this machine.

    Our runtimes default to ``'gloo'`` (works everywhere); with CUDA it becomes
    ``'nccl'``. Without CUDA, ``'nccl'`` (inherited from an upstream runtime) is
    replaced by ``'gloo'``. Returns the backend set in ``cfg``.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cfg.get('env_cfg', None) is None:
        cfg['env_cfg'] = dict()
    if cfg['env_cfg'].get('dist_cfg', None) is None:
        cfg['env_cfg']['dist_cfg'] = dict()
    backend = cfg['env_cfg']['dist_cfg'].get('backend', 'nccl')
    if cuda and backend == 'gloo':
        backend = 'nccl'
    elif not cuda and backend == 'nccl':
        backend = 'gloo'
    cfg['env_cfg']['dist_cfg']['backend'] = backend
    return backend


def prepare_runtime_cfg(cfg, launcher: str = 'none',
                        cuda: Optional[bool] = None) -> List[str]:
    """Adapt ``cfg`` to the device it will run on; returns human-readable notes.

    * single process or no CUDA: SyncBN -> BN (config level, so the model is built
      with BN; ``cfg.sync_bn`` conversion is dropped);
    * no CUDA and distributed: DDP wrapper without ``device_ids`` (the gloo backend is
      :func:`resolve_dist_backend`'s job).

    Works on ``Config`` and plain dicts; notes only name what changed, so a second
    call on the same config is silent.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    notes = []
    distributed = launcher != 'none'
    if not cuda or not distributed:
        n = sync_bn_to_bn(cfg.get('model', {}))
        if n:
            why = 'no CUDA device' if not cuda else 'a single process'
            notes.append(f'{n} SyncBN norm config(s) replaced by BN ({why}: SyncBN '
                         'needs a GPU process group)')
        if cfg.get('sync_bn', None) is not None:
            notes.append(f'sync_bn={cfg["sync_bn"]!r} ignored (no GPU process group)')
            cfg['sync_bn'] = None
    if not cuda and distributed:
        wrapper = cfg.get('model_wrapper_cfg', None)
        if wrapper is None:
            cfg['model_wrapper_cfg'] = dict(
                type='MMDistributedDataParallel',
                device_ids=None,
                broadcast_buffers=False,
                find_unused_parameters=cfg.get('find_unused_parameters', False))
            notes.append('CPU distributed run: DDP without device_ids')
        elif ('DistributedDataParallel' in str(wrapper.get('type', ''))
              and wrapper.get('device_ids', 'unset') is not None):
            wrapper['device_ids'] = None
            notes.append('CPU distributed run: DDP without device_ids')
    return notes


def init_cpu_dist(launcher: str, backend: str = 'gloo',
                  timeout: Optional[float] = None) -> None:
    """Start the process group for a CPU run (mmengine's ``init_dist`` needs CUDA).

    Only the ``pytorch`` launcher (``torchrun`` / ``tools/dist_train.sh``) is
    supported without GPUs; it provides ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
    and ``MASTER_PORT``.
    """
    import datetime

    import torch.distributed as dist
    if dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {launcher} needs CUDA (mmengine calls torch.cuda.set_device); '
            'on a CPU-only machine use --launcher pytorch via tools/dist_train.sh')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch expects {missing} in the environment; '
                           'start the tool with torchrun (tools/dist_train.sh)')
    kwargs: Dict[str, Any] = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    dist.init_process_group(backend=backend, **kwargs)
    # tear the group down before interpreter shutdown: left to static destructors, the
    # gloo threads can end the process with "terminate called without an active
    # exception" (exit -6) after a successful run
    atexit.register(_destroy_process_group)
    logging.getLogger(__name__).debug('initialised %s process group, rank %d/%d',
                                      backend, dist.get_rank(), dist.get_world_size())


def _destroy_process_group() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        try:  # no rank tears its gloo pairs down while another still talks to it
            dist.barrier()
        except Exception:  # noqa: BLE001  (a peer already gone: nothing to wait for)
            pass
        dist.destroy_process_group()


apply_compat()
