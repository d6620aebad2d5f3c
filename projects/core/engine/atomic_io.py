"""Crash-safe writes of state files (checkpoints, ``last_checkpoint``, SPT allocation
caches, configs, JSON summaries).

A process killed while writing must never leave a half-written file under the final
name, because a later run (``--resume``, ``tools/test.py``, the SPT cache lookup) would
pick it up and fail. Every write therefore goes to a temporary file in the same folder
(same file system, so the rename is atomic), is flushed and fsynced, and only then
renamed over the target with :func:`os.replace`; the folder is fsynced so the rename
survives a power loss. Readers see either the old file or the complete new one.

A crash can leave a temporary ``.<name>.tmp-<pid>-<random>`` file next to the target;
no reader looks for that name (delete it at will). The builtin ``open`` is looked up
at call time (not bound at import), so test doubles that patch ``builtins.open`` see
these writes too.
"""
import contextlib
import io
import json
import os
import os.path as osp
import uuid
from typing import IO, Any, Iterator, Union

PathLike = Union[str, 'os.PathLike[str]']


def _temp_name(path: str) -> str:
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}')


def _fsync_dir(folder: str) -> None:
    """Make the rename durable; some file systems refuse to open a folder: skip."""
    try:
        fd = os.open(folder or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = 'wb', **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` for writing, but the file appears under ``path`` only
    complete: on a clean exit of the ``with`` block it is flushed, fsynced and renamed
    over ``path``; on an exception the temporary file is removed and ``path`` is left
    as it was."""
    if mode not in ('w', 'wb', 'wt'):
        raise ValueError(f'atomic_open writes whole files (w, wb, wt), not {mode!r}')
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _temp_name(path)
    f = open(tmp, mode.replace('w', 'x'), **kwargs)  # noqa: SIM115 (closed below)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_open(path, 'wb') as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, encoding: str = 'utf-8') -> None:
    with atomic_open(path, 'w', encoding=encoding) as f:
        f.write(text)


def atomic_json_dump(obj: Any, path: PathLike, **kwargs) -> None:
    """``json.dump`` into ``path``; the text is built first, so an encoding error
    never touches the file system."""
    atomic_write_text(path, json.dumps(obj, **kwargs))


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` into ``path``. Serialised in memory first (one write), like
    mmengine's ``save_checkpoint``."""
    import torch
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
