"""Throughput measured the ToMe/PYRA way: eval mode, no grad, warm-up, then the median
of timed repeats (median rather than mean so a stray scheduler hiccup on a shared CPU
does not decide a ratio)."""
import statistics
import time
from typing import Callable, Dict

import torch
from torch import Tensor


@torch.no_grad()
def measure_interleaved(fns: Dict[str, Callable[[Tensor], object]], inputs: Tensor,
                        warmup: int = 2, repeats: int = 5) -> Dict[str, Dict[str, float]]:
    """Time several models round-robin on the same batch: every repeat times each model
    once, so slow drifts of a shared CPU (turbo, other load) hit all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(inputs)
    times: Dict[str, list] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if inputs.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn(inputs)
            if inputs.is_cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    bsz = inputs.shape[0]
    return {name: dict(images_per_s=bsz / statistics.median(t),
                       best_images_per_s=bsz / min(t),
                       worst_images_per_s=bsz / max(t),
                       median_batch_s=statistics.median(t)) for name, t in times.items()}
