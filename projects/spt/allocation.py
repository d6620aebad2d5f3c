"""Allocating a budget of trainable parameters from sensitivity scores (thesis
Sec. 2.3.2), as pure functions.

1. The top-tau entries of all scores (one global ranking, ties broken by position)
   form the sensitive set; ``counts[u]`` is how many of them unit ``u`` holds.
2. A weight matrix switches to structured tuning (LoRA / Adapter of rank r, costing
   ``P = structured_cost(...)``) when ``counts[u] >= P / alpha``; otherwise its
   selected entries are tuned unstructured (cost ``counts[u]``).
3. A vector is tuned whole (cost d) when ``counts[u] >= d / beta``, otherwise its
   selected entries are tuned unstructured.

Two rules (``rule=``):

- ``'thesis'`` (default): alpha = beta = 1 and tau = budget. Structured tuning never
  costs more than the sensitive entries it replaces, so the total is <= the budget.
- ``'official'`` (ziplab/SPT code): alpha = 10, beta = 5, and tau is swept so that the
  total cost is the closest to the budget (the code sweeps tau in 0.02M steps and keeps
  the closest total per target budget).

``alpha`` / ``beta`` / ``match_budget`` override the preset. ``structured_only`` drops
the unstructured entries (the thesis' segmentation setting).

:func:`allocation_problems` states what makes a stored allocation unusable (a unit of
the wrong kind, indices outside their unit, a unit listed twice), so that loading a
damaged or hand-edited file is a clear error instead of a crash deep in the surgery.
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor

from .structured import structured_cost
from .units import Unit

RULES = {
    'thesis': dict(alpha=1.0, beta=1.0, match_budget=False),
    'official': dict(alpha=10.0, beta=5.0, match_budget=True),
}


def _unit_costs(units, kind, rank):
    full = []
    for u in units:
        if u.kind == 'matrix':
            d_out, d_in = u.shape
            full.append(structured_cost(kind, rank, d_in, d_out))
        else:
            full.append(u.numel)
    return torch.tensor(full, dtype=torch.float64)


def _decide(counts: Tensor, full: Tensor, is_matrix: Tensor, alpha: float, beta: float,
            structured_only: bool):
    """Per unit: structured / whole-vector flag and total cost for these counts."""
    c = counts.to(torch.float64)
    thresh = torch.where(is_matrix, full / alpha, full / beta)
    whole = (c > 0) & (c >= thresh)
    partial = (c > 0) & ~whole
    cost = torch.where(whole, full, torch.zeros_like(full))
    if not structured_only:
        cost = cost + torch.where(partial, c, torch.zeros_like(c))
    return whole, partial, cost


def allocate(scores: Dict[str, Tensor], units: Dict[str, Unit], budget: int,
             structured: str = 'lora', rank: int = 8, rule: str = 'thesis',
             alpha: Optional[float] = None, beta: Optional[float] = None,
             match_budget: Optional[bool] = None, structured_only: bool = False) -> dict:
    """Allocate ``budget`` trainable parameters. ``scores[name]`` has ``units[name]``'s
    shape. Returns the allocation dict stored in the cache file (see README)."""
    if rule not in RULES:
        raise ValueError(f'rule must be one of {sorted(RULES)}, got {rule!r}.')
    if budget <= 0:
        raise ValueError(f'budget must be positive, got {budget}.')
    preset = RULES[rule]
    alpha = preset['alpha'] if alpha is None else float(alpha)
    beta = preset['beta'] if beta is None else float(beta)
    match_budget = preset['match_budget'] if match_budget is None else bool(match_budget)
    names = list(units)
    missing = [n for n in names if n not in scores]
    if missing:
        raise KeyError(f'no sensitivity scores for {missing[:5]}')
    for n in names:
        if tuple(scores[n].shape) != units[n].shape:
            raise ValueError(f'score of {n} has shape {tuple(scores[n].shape)}, '
                             f'expected {units[n].shape}')
    ulist = [units[n] for n in names]
    sizes = torch.tensor([u.numel for u in ulist])
    offsets = torch.cumsum(sizes, 0) - sizes
    total = int(sizes.sum())
    flat = torch.cat([scores[n].detach().flatten().float().cpu() for n in names])
    order = torch.sort(flat, descending=True, stable=True).indices
    del flat
    full = _unit_costs(ulist, structured, rank)
    is_matrix = torch.tensor([u.kind == 'matrix' for u in ulist])

    def owner(pos):
        return torch.searchsorted(offsets, pos, right=True) - 1

    if not match_budget:
        tau = min(int(budget), total)
    else:  # sweep tau, keep the total closest to the budget
        step = max(1, int(budget) // 100)
        limit = min(total, 20 * int(budget))
        counts = torch.zeros(len(ulist), dtype=torch.long)
        best_tau, best_gap = 0, float('inf')
        for start in range(0, limit, step):
            stop = min(start + step, limit)
            counts += torch.bincount(owner(order[start:stop]), minlength=len(ulist))
            gap = abs(float(_decide(counts, full, is_matrix, alpha, beta,
                                    structured_only)[2].sum()) - budget)
            if gap < best_gap:
                best_tau, best_gap = stop, gap
        tau = best_tau
    selected = torch.sort(order[:tau]).values
    del order
    counts = torch.bincount(owner(selected), minlength=len(ulist))
    whole, partial, cost = _decide(counts, full, is_matrix, alpha, beta, structured_only)

    bounds = torch.searchsorted(selected, torch.cat([offsets, sizes.sum().view(1)]))
    structured_units, full_vectors, sparse = [], [], {}
    for i, u in enumerate(ulist):
        if whole[i]:
            (structured_units if u.kind == 'matrix' else full_vectors).append(u.name)
        elif partial[i] and not structured_only:
            sparse[u.name] = (selected[bounds[i]:bounds[i + 1]] - offsets[i]).clone()
    cost_struct = int(full[whole & is_matrix].sum())
    cost_vec = int(full[whole & ~is_matrix].sum())
    cost_sparse = sum(int(v.numel()) for v in sparse.values())
    return dict(
        budget=int(budget), tau=int(tau), rule=rule, alpha=alpha, beta=beta,
        match_budget=match_budget, structured_only=bool(structured_only),
        structured_type=structured, rank=int(rank),
        structured=structured_units, full_vectors=full_vectors, sparse=sparse,
        counts={u.name: int(counts[i]) for i, u in enumerate(ulist)},
        numel={u.name: u.numel for u in ulist},
        cost=dict(structured=cost_struct, vectors=cost_vec, sparse=cost_sparse,
                  total=cost_struct + cost_vec + cost_sparse))


LISTS = ('structured', 'full_vectors', 'sparse')


def _index_problem(name: str, idx, numel: int) -> Optional[str]:
    if not (hasattr(idx, 'dim') and idx.dim() == 1 and idx.numel() > 0):
        return f'sparse[{name!r}] must be a non-empty 1-D index tensor'
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= numel:
        return (f'sparse[{name!r}] has indices out of range: [{lo}, {hi}] for a unit of '
                f'{numel} entries (valid: 0..{numel - 1})')
    if torch.unique(idx).numel() != idx.numel():
        return f'sparse[{name!r}] lists an index twice'
    return None


def allocation_problems(alloc: dict, units: Optional[Dict[str, Unit]] = None) -> List[str]:
    """Why ``alloc`` (the dict :func:`allocate` returns) cannot be applied, as
    readable sentences; empty when it can. Without ``units`` only its internal
    consistency is checked (sizes from ``alloc['numel']``); with the model's units,
    also the unit kinds and sizes of that model. Unknown unit names are left to the
    caller (they mean another architecture)."""
    problems = []
    listed: Dict[str, str] = {}
    for field in LISTS:
        for name in alloc[field]:
            if name in listed:
                problems.append(f'{name!r} is listed under both {listed[name]!r} and '
                                f'{field!r}')
            listed.setdefault(name, field)
    sizes = dict(alloc['numel'])
    if units is not None:
        sizes.update({n: u.numel for n, u in units.items()})
    for name in alloc['structured']:
        unit = units.get(name) if units is not None else None
        if unit is not None and unit.kind != 'matrix':
            problems.append(f'{name!r} is listed under \'structured\' but is a {unit.kind} '
                            'unit (only weight matrices take a LoRA / Adapter)')
    for name in alloc['full_vectors']:
        unit = units.get(name) if units is not None else None
        if unit is not None and unit.kind != 'vector':
            problems.append(f'{name!r} is listed under \'full_vectors\' but is a '
                            f'{unit.kind} unit (matrices are structured or sparse)')
    for name, idx in alloc['sparse'].items():
        if name not in sizes:
            if units is None:
                problems.append(f'sparse[{name!r}] has no size in \'numel\'')
            continue
        problem = _index_problem(name, idx, sizes[name])
        if problem:
            problems.append(problem)
    return problems
