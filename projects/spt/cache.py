"""The allocation cache file: one ``.pth`` per (model, data, sensitivity options,
budget, allocation options), identified by a key stored inside the file.

Loading raises :class:`SPTCacheError` with the path and what to do when the file is
corrupt (unreadable, wrong format, inconsistent content) or was computed for other
settings. Saving is atomic (``projects.core.engine.atomic_io``): a process killed while
writing never leaves a partial file under the cache's name, so the next run
recomputes the allocation instead of failing on it.
"""
import hashlib
import json
import os.path as osp
from typing import Any, Optional

import torch

from ..core.engine.atomic_io import atomic_torch_save
from .allocation import allocation_problems

FORMAT = 'mmadapt-spt-allocation'
VERSION = 1
REQUIRED = {
    'budget': int, 'tau': int, 'structured_type': str, 'rank': int, 'structured': list,
    'full_vectors': list, 'sparse': dict, 'counts': dict, 'numel': dict, 'cost': dict,
    'key': str, 'key_info': str,
}


class SPTCacheError(RuntimeError):
    """A cached SPT allocation that cannot be used."""


def make_key(info: Any) -> tuple:
    """(sha1 hex, canonical JSON) of ``info`` (configs, numbers, strings)."""
    text = json.dumps(info, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest(), text


def save_allocation(path: str, alloc: dict) -> None:
    """Write atomically: temporary file, fsync, rename (a crash never leaves a
    half-written cache, not even after a power loss)."""
    atomic_torch_save(dict(alloc, format=FORMAT, version=VERSION), path)


def load_allocation(path: str, expected_key: Optional[str] = None,
                    expected_info: Optional[str] = None) -> dict:
    hint = (f'Delete {path} to recompute it (tools/train.py with runner_type='
            "'SPTRunner'), or point spt_cfg.allocation to another file.")
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'SPT allocation {path} does not exist. Train with runner_type=\'SPTRunner\' '
            '(tools/train.py on an SPT config computes it), or run the sensitivity pass '
            'first.')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means corrupt)
        raise SPTCacheError(f'corrupt SPT allocation cache {path}: cannot be read '
                            f'({type(exc).__name__}: {exc}). {hint}') from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise SPTCacheError(f'corrupt SPT allocation cache {path}: not an MMAdapt SPT '
                            f'allocation file. {hint}')
    if data.get('version') != VERSION:
        raise SPTCacheError(f'SPT allocation cache {path} has format version '
                            f'{data.get("version")}, expected {VERSION}. {hint}')
    bad = [k for k, t in REQUIRED.items() if not isinstance(data.get(k), t)]
    if bad or not all(torch.is_tensor(v) and v.dtype == torch.long
                      for v in data['sparse'].values()):
        raise SPTCacheError(f'corrupt SPT allocation cache {path}: missing or malformed '
                            f'fields {bad or ["sparse"]}. {hint}')
    problems = allocation_problems(data)
    if problems:
        raise SPTCacheError(f'corrupt SPT allocation cache {path}: '
                            + '; '.join(problems[:5]) + f'. {hint}')
    if expected_key is not None and data['key'] != expected_key:
        raise SPTCacheError(
            f'mismatched SPT allocation cache {path}: it was computed for other settings '
            f'(model / data / sensitivity / budget).\n  cached:   {data["key_info"]}\n'
            f'  expected: {expected_info}\n{hint}')
    return data
