"""Per-layer merge schedules (how many token pairs each block merges).

Accepted forms, all resolved at build time against the build image size:
- a list of ints, one per layer (padded with zeros);
- an int ``r``: ToMe's constant schedule, with ToMe's cap applied per layer;
- a tuple ``(r, inflect)``: ToMe's linear schedule (``(16, -1.0)`` = "decreasing"), capped;
- ``'low'`` / ``'high'``: PYRA's presets for 12- and 24-layer ViTs at 196 patch tokens
  (ViT-B/16, DeiT-B/16, ViT-L/16 at 224 px). For another token count they are rescaled
  with :func:`rescale_schedule`, the same rule used at run time for dense inputs.

The run-time rule for inputs of another size than the build size: each layer keeps the
fraction of its incoming tokens that it merged at build size
(``r' = round(r * t' / t)``), capped by ToMe's half-of-tokens limit.
"""
from typing import List, Sequence, Tuple, Union

from .token_merge import max_merge

ScheduleSpec = Union[None, int, str, Tuple[int, float], Sequence[int]]

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
            raise ValueError(f'merge schedule: layer {layer} asks for r={r} < 0.')
        cap = max_merge(t, class_token)
        if r > cap:
            raise ValueError(
                f'merge schedule: layer {layer} asks to merge r={r} token pairs but only '
                f'{t} tokens reach it, so at most {cap} can merge. Lower r for layer '
                f'{layer} (and later ones), or use a larger img_size / smaller patch_size. '
                f'Full schedule: {list(schedule)}')


def rescale_schedule(schedule: Sequence[int], num_tokens: int, new_num_tokens: int,
                     class_token: bool) -> List[int]:
    """Keep each layer's merged fraction of its incoming tokens at another token count."""
    if new_num_tokens == num_tokens:
        return list(schedule)
    out, t_new = [], new_num_tokens
    for r, t in zip(schedule, token_counts(schedule, num_tokens, class_token)):
        r_new = min(int(round(r * t_new / t)), max_merge(t_new, class_token)) if r > 0 else 0
        out.append(r_new)
        t_new -= r_new
    return out


def resolve_schedule(spec: ScheduleSpec, num_layers: int, num_patches: int,
                     class_token: bool, arch_family: str = 'vit') -> List[int]:
    """Turn a schedule spec into a validated per-layer list for ``num_patches`` tokens."""
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
    elif isinstance(spec, int) or (isinstance(spec, tuple) and len(spec) == 2
                                   and isinstance(spec[1], float)):
        # ToMe's own schedules are defined with its run-time cap (r=16 on ViT-B/16
        # merges only 10 pairs in the last layer); explicit lists are checked strictly.
        schedule = cap_schedule(tome_schedule(num_layers, spec), num_tokens, class_token)
    else:
        schedule = [int(r) for r in spec]
        if len(schedule) > num_layers:
            raise ValueError(f'merge_schedule has {len(schedule)} entries for a '
                             f'{num_layers}-layer model.')
        schedule += [0] * (num_layers - len(schedule))
    validate_schedule(schedule, num_tokens, class_token)
    return schedule
