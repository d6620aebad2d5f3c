"""Crash-safe checkpoints for every config that imports ``projects``
(``custom_imports=dict(imports=['projects'])``; ``tools/train.py`` imports it too).

mmengine writes a checkpoint in two steps, neither of them atomic:

1. ``Runner.save_checkpoint`` -> ``mmengine.runner.save_checkpoint`` serialises the
   dict in memory and hands the bytes to the file backend of the path
   (``get_file_backend(...).put``); for a local path that is ``LocalBackend``, which
   opens the final name with ``'wb'`` and writes into it;
2. ``CheckpointHook`` then writes the checkpoint's path into ``work_dir/last_checkpoint``
   with the builtin ``open(..., 'w')``; ``--resume`` reads that file.

A process killed (or a machine losing power) in the middle leaves a truncated
``epoch_N.pth`` or an empty / half ``last_checkpoint``, and the next ``--resume`` or
``tools/test.py`` fails on it. :func:`install` fixes both without touching mmengine's
code or any config:

* the local storage backend (name ``'local'``, the default for paths without a
  prefix) is re-registered through mmengine's own ``register_backend(force=True)`` as
  :class:`AtomicLocalBackend`, whose ``put`` / ``put_text`` write through
  :mod:`projects.core.engine.atomic_io` (temporary file, fsync, ``os.replace``). This covers
  checkpoints, published / best checkpoints and ``mmengine.dump`` to local files;
  remote backends (``s3://``, ``petrel://``) are unchanged;
* ``mmengine.hooks.checkpoint_hook`` gets a module-level ``open`` that makes write
  modes atomic and passes reads to the builtin (that module only writes
  ``last_checkpoint``).

Idempotent: calling :func:`install` again changes nothing.
"""
import builtins
from pathlib import Path
from typing import IO, ContextManager, Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio.backends import registry_utils
from mmengine.hooks import checkpoint_hook

from ..engine.atomic_io import atomic_open, atomic_write_bytes, atomic_write_text


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` with whole-file writes that never leave a partial
    file under the target name."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write_text(filepath, obj, encoding=encoding)


def _hook_open(file, mode: str = 'r', *args, **kwargs) -> Union[IO, ContextManager[IO]]:
    """``open`` for CheckpointHook's module: whole-file writes are atomic (used as
    ``with open(...) as f`` there, which both return values support)."""
    if mode in ('w', 'wb', 'wt') and not args:
        return atomic_open(file, mode, **kwargs)
    return builtins.open(file, mode, *args, **kwargs)


def install() -> None:
    """Route mmengine's local checkpoint and ``last_checkpoint`` writes through
    :mod:`projects.core.engine.atomic_io`."""
    if registry_utils.backends.get('local') is not AtomicLocalBackend or \
            registry_utils.prefix_to_backends.get('') is not AtomicLocalBackend:
        register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    checkpoint_hook.open = _hook_open


def installed() -> bool:
    return (registry_utils.prefix_to_backends.get('') is AtomicLocalBackend and
            getattr(checkpoint_hook, 'open', None) is _hook_open)


install()
