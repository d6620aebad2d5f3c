"""Per-layer merge schedules (how many token pairs each block merges).

Accepted forms, all resolved at build time against the build image size:
- a **list** of ints, one per layer (padded with zeros). A list is always per-layer,
  as in ToMe's ``parse_r``;
- an int ``r``: ToMe's constant schedule, with ToMe's cap applied per layer;
- a **tuple** ``(r, inflect)``: ToMe's linear schedule from ``r * (1 - inflect)`` to
  ``r * (1 + inflect)`` (``(16, -1.0)`` = "decreasing"), capped; ``inflect`` is a
  float or an int in [-1, 1];
- ``'low'`` / ``'high'``: PYRA's presets for 12- and 24-layer ViTs at 196 patch tokens
  (ViT-B/16, DeiT-B/16, ViT-L/16 at 224 px). For another token count they are rescaled
  with :func:`rescale_schedule`, the same rule used at run time for dense inputs.

Tuples of ints are also accepted as per-layer schedules (like a list) when they cannot
be ToMe's form: any length other than 2, or a second entry that is an int outside
[-1, 1] (``(4, 3)``). Which reading a 2-tuple of ints ``(r, i)`` with ``i`` in
{-1, 0, 1} gets:

- ``i == -1``: ToMe's ramp (a per-layer r cannot be negative);
- a model with 1 layer or with 3 or more: ToMe's ramp (``(16, 0)`` = r=16 in every
  layer). Per-layer, it would be one r for a single layer, or a short schedule
  zero-padded to the depth; that reading was the silent misread this rule removes;
- a model with exactly 2 layers: the tuple names one r per layer as naturally as it
  names (r, inflect), so when the two readings give different schedules it is refused
  with both readings spelled out: write a list (``[16, 0]``) for per-layer or a float
  inflect (``(16, 0.0)``) for ToMe's ramp.

The run-time rule for inputs of another size than the build size: each layer keeps the
fraction of its incoming tokens that it merged at build size
(``r' = round(r * t' / t)``), capped by ToMe's half-of-tokens limit.
"""
import numbers
from typing import List, Sequence, Tuple, Union

from .token_merge import max_merge

ScheduleSpec = Union[None, int, str, Tuple[int, Union[int, float]], Sequence[int]]

# THU-MIG/PYRA model/tome.py::get_merging_schedule (facts, re-typed).
PYRA_PRESETS = {
    ('vit', 12, 'low'): [16] * 11 + [10],
    ('vit', 12, 'high'): [40, 34, 30, 24, 18, 14, 10, 8, 4, 4, 3, 3],
    ('deit', 12, 'low'): [16] * 6 + [10] * 6,
    ('deit', 12, 'high'): [40, 34, 30, 24, 18, 14, 10, 8, 4, 4, 3, 3],
    ('vit', 24, 'low'): [8] * 23 + [6],
    ('vit', 24, 'high'): [20, 19, 18, 17, 15, 13, 13, 12, 10, 9, 8, 6,
                          6, 4, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1],
}
PRESET_PATCH_TOKENS = 196


def tome_schedule(num_layers: int, r: Union[int, Tuple[int, float]]) -> List[int]:
    """ToMe's ``parse_r``: constant for an int, linear ramp for ``(r, inflect)``."""
    inflect = 0.0
    if isinstance(r, (tuple, list)):
        r, inflect = r
    lo = int(r * (1.0 - inflect))
    hi = 2 * r - lo
    if num_layers == 1:
        return [int(r)]
    return [int(lo + (hi - lo) * i / (num_layers - 1)) for i in range(num_layers)]


def cap_schedule(schedule: Sequence[int], num_tokens: int, class_token: bool) -> List[int]:
    """Apply ToMe's per-layer cap, as ToMe itself does for int / (r, inflect) specs."""
    out = []
    for r in schedule:
        r = min(r, max_merge(num_tokens, class_token))
        out.append(r)
        num_tokens -= r
    return out


def token_counts(schedule: Sequence[int], num_tokens: int, class_token: bool) -> List[int]:
    """Tokens entering each layer, applying the schedule as given (no capping)."""
    counts = []
    for r in schedule:
        counts.append(num_tokens)
        num_tokens -= r
    return counts


def validate_schedule(schedule: Sequence[int], num_tokens: int, class_token: bool) -> None:
    """Raise if any layer asks for more merges than ToMe's cap allows."""
    for layer, (r, t) in enumerate(zip(schedule, token_counts(schedule, num_tokens, class_token))):
        if r < 0:
            raise ValueError(
                f'merge schedule: layer {layer} asks for r={r}, but r counts the token '
                f'pairs merged in that layer and must be >= 0. Write 0 for a layer that '
                f'merges nothing. Full schedule: {list(schedule)}')
        cap = max_merge(t, class_token)
        if r > cap:
            raise ValueError(
                f'merge schedule: layer {layer} asks to merge r={r} token pairs but only '
                f'{t} tokens reach it, so at most {cap} can merge. Lower r for layer '
                f'{layer} (and later ones), or use a larger img_size / smaller patch_size. '
                f'Full schedule: {list(schedule)}')


def layer_merge(num_merge: int, num_tokens: int, tokens_now: int,
                class_token: bool) -> int:
    """Pairs one layer merges when ``tokens_now`` tokens reach it, built to merge
    ``num_merge`` of ``num_tokens``: the same fraction, rounded, capped by ToMe."""
    if num_merge <= 0:
        return 0
    if tokens_now == num_tokens or num_tokens <= 0:
        return num_merge
    return min(int(round(num_merge * tokens_now / num_tokens)),
               max_merge(tokens_now, class_token))


def rescale_schedule(schedule: Sequence[int], num_tokens: int, new_num_tokens: int,
                     class_token: bool) -> List[int]:
    """Keep each layer's merged fraction of its incoming tokens at another token count."""
    if new_num_tokens == num_tokens:
        return list(schedule)
    out, t_new = [], new_num_tokens
    for r, t in zip(schedule, token_counts(schedule, num_tokens, class_token)):
        r_new = layer_merge(r, t, t_new, class_token)
        out.append(r_new)
        t_new -= r_new
    return out


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _per_layer(spec: Sequence, num_layers: int) -> List[int]:
    """A list (or a tuple read as one): ints, at most one per layer, zero-padded."""
    for layer, r in enumerate(spec):
        if not _is_int(r):
            hint = (f' For ToMe\'s ramp write a tuple ({spec[0]!r}, {r!r}).'
                    if len(spec) == 2 and layer == 1 and _is_number(r) else '')
            raise ValueError(f'merge_schedule={spec!r}: a list is one r per layer, but entry '
                             f'{layer} is {r!r}, not an int.{hint}')
    if len(spec) > num_layers:
        raise ValueError(f'merge_schedule has {len(spec)} entries for a '
                         f'{num_layers}-layer model.')
    return [int(r) for r in spec] + [0] * (num_layers - len(spec))


def _is_tome_ramp(spec: tuple, num_layers: int, num_tokens: int, class_token: bool) -> bool:
    """Whether a tuple is ToMe's ``(r, inflect)`` (else it is per-layer); raises when
    the module docstring's rule finds it ambiguous or malformed."""
    if len(spec) != 2 or not all(_is_number(v) for v in spec):
        return False
    r, inflect = spec
    if _is_int(inflect) and inflect not in (-1, 0, 1):
        return False  # no ToMe inflect; only the per-layer reading exists
    if not _is_int(r) or r < 0:
        raise ValueError(f'merge_schedule={spec!r}: ToMe\'s (r, inflect) needs an int '
                         f'r >= 0, got r={r!r}.')
    if not -1.0 <= inflect <= 1.0:
        raise ValueError(f'merge_schedule={spec!r}: ToMe\'s inflect must lie in [-1, 1] '
                         f'(-1 decreasing, 0 constant, 1 increasing), got {inflect!r}. '
                         f'For one r per layer write a list {list(spec)!r}.')
    if _is_int(inflect) and inflect >= 0 and num_layers == 2:
        ramp = cap_schedule(tome_schedule(num_layers, spec), num_tokens, class_token)
        layers = [r, inflect]
        if ramp != layers:
            raise ValueError(
                f'merge_schedule={spec!r} is ambiguous for a 2-layer model: as ToMe\'s '
                f'(r, inflect) it merges {ramp} token pairs per layer, as one r per layer '
                f'it merges {layers}. Write a list {layers!r} for per-layer r, or '
                f'({r}, {float(inflect)!r}) (a float inflect) for ToMe\'s ramp.')
    return True


def resolve_schedule(spec: ScheduleSpec, num_layers: int, num_patches: int,
                     class_token: bool, arch_family: str = 'vit') -> List[int]:
    """Turn a schedule spec into a validated per-layer list for ``num_patches`` tokens
    (forms and the list / tuple rule: see the module docstring)."""
    num_tokens = num_patches + int(class_token)
    if spec is None:
        schedule = [0] * num_layers
    elif isinstance(spec, str):
        key = (arch_family, num_layers, spec)
        if key not in PYRA_PRESETS:
            known = sorted({k[2] for k in PYRA_PRESETS})
            raise ValueError(
                f"merge_schedule '{spec}' is not defined for a {num_layers}-layer "
                f"{arch_family} model; presets {known} exist for 12- and 24-layer ViTs. "
                f'Pass a per-layer list of r instead.')
        schedule = rescale_schedule(PYRA_PRESETS[key], PRESET_PATCH_TOKENS + int(class_token),
                                    num_tokens, class_token)
    elif _is_int(spec) or (isinstance(spec, tuple) and
                           _is_tome_ramp(spec, num_layers, num_tokens, class_token)):
        # ToMe's own schedules are defined with its run-time cap (r=16 on ViT-B/16
        # merges only 10 pairs in the last layer); explicit lists are checked strictly.
        schedule = cap_schedule(tome_schedule(num_layers, spec), num_tokens, class_token)
    elif isinstance(spec, Sequence):
        schedule = _per_layer(spec, num_layers)
    else:
        raise ValueError(f'merge_schedule={spec!r} ({type(spec).__name__}) is not a '
                         "schedule: use None, an int r, a tuple (r, inflect), 'low' / "
                         "'high' or a list with one r per layer.")
    validate_schedule(schedule, num_tokens, class_token)
    return schedule
