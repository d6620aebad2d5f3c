"""Throughput measured the ToMe/PYRA way: eval mode, no grad, warm-up, then the median
of timed repeats (median rather than mean so a stray scheduler hiccup on a shared CPU
does not decide a ratio)."""
import statistics
import time
from typing import Callable, Dict

import torch
from torch import Tensor


@torch.no_grad()
def measure_throughput(fn: Callable[[Tensor], object], inputs: Tensor, warmup: int = 2,
                       repeats: int = 5) -> Dict[str, float]:
    """Images per second of ``fn(inputs)``; returns median/min/max over repeats."""
    for _ in range(warmup):
        fn(inputs)
    times = []
    for _ in range(repeats):
        if inputs.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(inputs)
        if inputs.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    bsz = inputs.shape[0]
    return dict(images_per_s=bsz / statistics.median(times),
                best_images_per_s=bsz / min(times),
                worst_images_per_s=bsz / max(times),
                median_batch_s=statistics.median(times))
