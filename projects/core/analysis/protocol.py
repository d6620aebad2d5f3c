"""The benchmark protocol of ``tools/analysis/benchmark.py`` (and the method benchmarks
that follow it), answering what users of token reduction ask of a speed claim --
wall-clock, not counted savings:

* batch 1 (latency) and a saturating batch (throughput);
* real images by default (:mod:`.loading`): a batch of one repeated image gives every
  image the same token count;
* the backbone alone and the model end to end;
* optionally under autocast: ``bf16`` on CPU, ``fp16`` (or ``bf16``) on CUDA;
* every number a ratio against the strongest baseline, measured side by side in the
  same interleaved run (:func:`.benchmark.time_interleaved`).
"""
import contextlib
from typing import Callable, ContextManager, Dict, Iterable, Optional

import torch

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_amp(amp: Optional[str], device: str) -> None:
    if amp is None:
        return
    if amp not in AMP_DTYPES:
        raise ValueError(f'--amp {amp}: use one of {", ".join(AMP_DTYPES)}.')
    if amp == 'fp16' and device == 'cpu':
        raise ValueError('--amp fp16 autocasts on CUDA only; on CPU use --amp bf16.')


def amp_context(amp: Optional[str], device: str = 'cpu') -> ContextManager:
    """``torch.autocast`` for ``amp`` on ``device``, or a no-op for None."""
    check_amp(amp, device)
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=AMP_DTYPES[amp])


def dtype_name(amp: Optional[str]) -> str:
    """The report's ``dtype`` field: the compute dtype of the timed forward."""
    return 'float32' if amp is None else f'autocast {amp}'


def under_amp(fn: Callable, amp: Optional[str], device: str = 'cpu') -> Callable:
    """``fn`` run under :func:`amp_context` (unchanged when ``amp`` is None)."""
    if amp is None:
        return fn

    def run(*args, **kwargs):
        with amp_context(amp, device):
            return fn(*args, **kwargs)
    return run


def strongest(speed: Dict[str, float], baselines: Iterable[str]) -> str:
    """The fastest of the baseline rows: ratios against it are the honest ones (a
    method that only beats a slow baseline has not saved anything)."""
    names = [n for n in baselines if n in speed]
    if not names:
        raise ValueError('no baseline row was timed.')
    return max(names, key=lambda n: speed[n])
