"""ESTA's task-specific stitch sampling (thesis §3.4.2), free of mmengine so it can be
tested alone; :class:`~projects.esta.hooks.ESTASamplingHook` drives it.

* Intervals: the stitches' FLOPs range [min, max] cut into ``num_intervals`` equal
  parts; empty parts are dropped.
* Warm-up: a stitch uniformly from all of them.
* Afterwards: an interval uniformly, then a stitch from softmax(z / temperature)
  over that interval's stitches, z = score / max score of the interval (our
  normalisation: the thesis says "softmax of the normalised scores" without saying
  how; dividing by the maximum makes it scale-free, in [0, 1]).
* Scores: moving average ``s <- m s + (1 - m) Q`` of the sampled stitch's SNIP score Q;
  a stitch's first Q sets its score (a zero start would favour the stitches sampled
  most often).

Distributed: rank 0 draws and broadcasts (:func:`broadcast_int`); Q is averaged over
ranks (:func:`mean_over_ranks`) before the update, so every rank holds the same scores.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import broadcast, get_world_size
from mmengine.dist import all_reduce


class StitchSampler:

    def __init__(self, flops: Sequence[float], num_intervals: int = 15,
                 momentum: float = 0.9, temperature: float = 1.0, seed: int = 0) -> None:
        if len(flops) < 1:
            raise ValueError('StitchSampler needs the FLOPs of at least one stitch.')
        if num_intervals < 1:
            raise ValueError(f'num_intervals must be >= 1, got {num_intervals}.')
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}.')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}.')
        self.flops = np.asarray(flops, dtype=np.float64)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        lo, hi = self.flops.min(), self.flops.max()
        width = (hi - lo) / num_intervals if hi > lo else 1.0
        index = np.minimum(((self.flops - lo) / width).astype(int), num_intervals - 1)
        #: (lower FLOPs bound, stitch ids) of every non-empty interval, by FLOPs
        self.intervals: List[Tuple[float, List[int]]] = [
            (float(lo + i * width), [int(s) for s in np.flatnonzero(index == i)])
            for i in range(num_intervals) if np.any(index == i)]
        self.scores = np.zeros(len(self.flops))
        self.counts = np.zeros(len(self.flops), dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.flops)

    def probabilities(self, interval: int) -> np.ndarray:
        """Sampling probabilities of the stitches of ``interval`` (after warm-up)."""
        ids = self.intervals[interval][1]
        scores = self.scores[ids]
        top = scores.max()
        z = scores / top if top > 0 else np.zeros_like(scores)
        e = np.exp((z - z.max()) / self.temperature)
        return e / e.sum()

    def sample(self, uniform: bool) -> int:
        if uniform:
            return int(self.rng.integers(len(self.flops)))
        interval = int(self.rng.integers(len(self.intervals)))
        ids = self.intervals[interval][1]
        return int(ids[self.rng.choice(len(ids), p=self.probabilities(interval))])

    def update(self, stitch: int, score: float) -> None:
        if self.counts[stitch] == 0:
            self.scores[stitch] = score
        else:
            m = self.momentum
            self.scores[stitch] = m * self.scores[stitch] + (1 - m) * score
        self.counts[stitch] += 1

    def best_per_interval(self) -> List[Dict]:
        """The top-scored stitch of every interval (ties: the fewer FLOPs)."""
        out = []
        for i, (lower, ids) in enumerate(self.intervals):
            best = max(ids, key=lambda s: (self.scores[s], -self.flops[s]))
            out.append(dict(interval=i, flops_from=lower, stitch=int(best),
                            score=float(self.scores[best]), flops=float(self.flops[best])))
        return out

    def state_dict(self) -> Dict:
        return dict(scores=self.scores.tolist(), counts=self.counts.tolist(),
                    rng=self.rng.bit_generator.state, flops=self.flops.tolist())

    def load_state_dict(self, state: Dict) -> None:
        if len(state['scores']) != len(self.flops) or \
                not np.allclose(state['flops'], self.flops):
            raise ValueError(
                f'ESTA sampler state of {len(state["scores"])} stitches does not fit this '
                f'model ({len(self.flops)} stitches, or other FLOPs): the checkpoint comes '
                'from another stitching space; resume from a checkpoint of this config.')
        self.scores = np.asarray(state['scores'], dtype=np.float64)
        self.counts = np.asarray(state['counts'], dtype=np.int64)
        self.rng.bit_generator.state = state['rng']


def broadcast_int(value: int, src: int = 0) -> int:
    """``value`` of rank ``src`` on every rank (itself without a process group)."""
    if get_world_size() == 1:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long)
    broadcast(t, src)
    return int(t.item())


def mean_over_ranks(value: float) -> float:
    if get_world_size() == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    all_reduce(t, op='mean')
    return float(t.item())
