"""Throughput measured the ToMe/PYRA way: eval mode, no grad, warm-up, then the median
of timed repeats (median rather than mean so a stray scheduler hiccup on a shared CPU
does not decide a ratio)."""
import statistics
import time
from typing import Callable, Dict

import torch
from torch import Tensor

from .progress import progress


def _sync(inputs: Tensor) -> None:
    if inputs.is_cuda:
        torch.cuda.synchronize()


def time_interleaved(fns: Dict[str, Callable[[Tensor], object]], inputs: Tensor,
                     warmup: int = 2, repeats: int = 5,
                     desc: str = 'timing') -> Dict[str, list]:
    """Seconds of every call, per name: each repeat calls every function once, round-
    robin, so slow drifts of a shared CPU (turbo, other load) hit all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(inputs)
    times: Dict[str, list] = {name: [] for name in fns}
    for _ in progress(range(repeats), desc=desc, total=repeats):
        for name, fn in fns.items():
            _sync(inputs)
            start = time.perf_counter()
            fn(inputs)
            _sync(inputs)
            times[name].append(time.perf_counter() - start)
    return times


@torch.no_grad()
def measure_interleaved(fns: Dict[str, Callable[[Tensor], object]], inputs: Tensor,
                        warmup: int = 2, repeats: int = 5) -> Dict[str, Dict[str, float]]:
    """Images/s of several models timed round-robin on the same batch (no grad)."""
    times = time_interleaved(fns, inputs, warmup, repeats)
    bsz = inputs.shape[0]
    return {name: dict(images_per_s=bsz / statistics.median(t),
                       best_images_per_s=bsz / min(t),
                       worst_images_per_s=bsz / max(t),
                       median_batch_s=statistics.median(t)) for name, t in times.items()}
