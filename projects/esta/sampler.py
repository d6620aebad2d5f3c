"""ESTA's task-specific stitch sampling (thesis §3.4.2), free of mmengine so it can be
tested alone; :class:`~projects.esta.hooks.ESTASamplingHook` drives it.

* Intervals: the stitches' FLOPs range [min, max] cut into ``num_intervals`` equal
  parts; empty parts are dropped.
* Warm-up: a stitch uniformly from all of them.
* Afterwards: an interval uniformly, then a stitch from softmax(z / temperature)
  over that interval's stitches, z = score / max score of the interval (our
  normalisation: the thesis says "softmax of the normalised scores" without saying
  how; dividing by the maximum makes it scale-free, in [0, 1]).
* Scores: moving average with momentum ``m`` (thesis: 0.9) of the sampled stitch's
  SNIP score Q. ``bias_correction=False``: ``s <- m s + (1 - m) Q``, a stitch's first
  Q sets its score (a zero start would favour the stitches sampled most often).
  ``bias_correction=True`` (ours): Adam's bias-corrected average ``EMA_n / (1 - m^n)``
  from a zero start, i.e. ``sum_i m^(n-i) Q_i / sum_i m^(n-i)``: with few samples the
  first reading no longer keeps most of the weight (7 samples: 10 % instead of 53 %).
* ``normalise='running_mean'`` (ours): Q is divided by the bias-corrected running mean
  (momentum ``level_momentum``) of the Q of every iteration so far, whatever the
  stitch, before it enters the score. Q grows as the LoRA B matrices and biases grow
  from zero, so raw readings record *when* a stitch was sampled; divided by the level
  of that time they compare stitches sampled at different times.

Distributed: rank 0 draws and broadcasts (:func:`broadcast_int`); Q is averaged over
ranks (:func:`mean_over_ranks`) before the update, so every rank holds the same scores.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import broadcast, get_world_size
from mmengine.dist import all_reduce

NORMALISE = (None, 'running_mean')


class StitchSampler:

    def __init__(self, flops: Sequence[float], num_intervals: int = 15,
                 momentum: float = 0.9, temperature: float = 1.0, seed: int = 0,
                 bias_correction: bool = False, normalise: Optional[str] = None,
                 level_momentum: float = 0.9) -> None:
        if len(flops) < 1:
            raise ValueError('StitchSampler needs the FLOPs of at least one stitch.')
        if num_intervals < 1:
            raise ValueError(f'num_intervals must be >= 1, got {num_intervals}.')
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}.')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}.')
        if normalise not in NORMALISE:
            raise ValueError(f'normalise must be one of {NORMALISE}, got {normalise!r}.')
        if not 0 <= level_momentum < 1:
            raise ValueError(f'level_momentum must be in [0, 1), got {level_momentum}.')
        self.bias_correction = bool(bias_correction)
        self.normalise = normalise
        self.level_momentum = float(level_momentum)
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
        # weighted sums of the bias-corrected average: score = num / den
        self.num = np.zeros(len(self.flops))
        self.den = np.zeros(len(self.flops))
        self.level_num, self.level_den = 0.0, 0.0
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

    def normalised(self, q: float) -> Optional[float]:
        """``q`` as it enters the score; with ``normalise='running_mean'`` divided by the
        running mean of all readings including this one (which it updates); None for
        the zero readings before the first non-zero one (at init every PEFT parameter
        is zero or has zero gradient, so Q is exactly 0 whatever the stitch: such a
        reading enters neither the score nor the running mean)."""
        if self.normalise is None:
            return float(q)
        if self.level_num == 0 and float(q) == 0:
            return None
        lm = self.level_momentum
        self.level_num = lm * self.level_num + float(q)
        self.level_den = lm * self.level_den + 1.0
        return float(q) * self.level_den / self.level_num

    def update(self, stitch: int, q: float) -> Optional[float]:
        """Enter the SNIP score ``q`` of ``stitch``; returns the value that entered the
        score (None: not entered -- a non-finite ``q``, or see :meth:`normalised`; the
        sample is still counted)."""
        # a non-finite Q (an AMP step whose gradients overflowed) says nothing
        value = self.normalised(q) if np.isfinite(q) else None
        if value is None:
            self.counts[stitch] += 1
            return None
        m = self.momentum
        self.num[stitch] = m * self.num[stitch] + value
        self.den[stitch] = m * self.den[stitch] + 1.0
        if self.bias_correction:
            self.scores[stitch] = self.num[stitch] / self.den[stitch]
        elif self.counts[stitch] == 0:
            self.scores[stitch] = value
        else:
            self.scores[stitch] = m * self.scores[stitch] + (1 - m) * value
        self.counts[stitch] += 1
        return value

    def best_per_interval(self, by: Optional[Sequence[float]] = None) -> List[Dict]:
        """The stitch of every interval with the top score, or the top value of ``by``
        (one per stitch, e.g. validation accuracy; then ``by`` is in each entry as
        ``value``); ties: the fewer FLOPs."""
        rank = self.scores if by is None else np.asarray(by, dtype=np.float64)
        if len(rank) != len(self.flops):
            raise ValueError(f'best_per_interval: {len(rank)} values for '
                             f'{len(self.flops)} stitches.')
        out = []
        for i, (lower, ids) in enumerate(self.intervals):
            best = max(ids, key=lambda s: (rank[s], -self.flops[s]))
            entry = dict(interval=i, flops_from=lower, stitch=int(best),
                         score=float(self.scores[best]), flops=float(self.flops[best]))
            if by is not None:
                entry['value'] = float(rank[best])
            out.append(entry)
        return out

    def state_dict(self) -> Dict:
        return dict(scores=self.scores.tolist(), counts=self.counts.tolist(),
                    rng=self.rng.bit_generator.state, flops=self.flops.tolist(),
                    num=self.num.tolist(), den=self.den.tolist(),
                    level=[self.level_num, self.level_den])

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
        if 'num' in state:
            self.num = np.asarray(state['num'], dtype=np.float64)
            self.den = np.asarray(state['den'], dtype=np.float64)
            self.level_num, self.level_den = (float(v) for v in state['level'])
        else:  # a checkpoint from before the bias-corrected average
            self.den = (1 - self.momentum ** self.counts) / (1 - self.momentum)
            self.num = self.scores * self.den


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
