"""Allocation: exact top-tau, structured/unstructured switch at the threshold (thesis
and official rules), whole vectors, budget matching."""
import pytest
import torch

from projects.spt.allocation import allocate
from projects.spt.structured import structured_cost
from projects.spt.units import Unit


def _units():
    return {
        'a.weight': Unit('a.weight', 'a.weight', None, (16, 8), 'matrix', 0, 'fc1'),
        'b.weight': Unit('b.weight', 'b.weight', None, (8, 16), 'matrix', 0, 'fc2'),
        'n.weight': Unit('n.weight', 'n.weight', None, (10,), 'vector', 0, 'norm1.weight'),
    }


def _scores(select):
    """Scores where exactly the entries in ``select[name]`` (first k flat positions)
    are high, everything else is tiny and distinct."""
    out, base = {}, 0
    for name, u in _units().items():
        s = torch.arange(u.numel, dtype=torch.float32).flip(0) * 1e-6 + base
        s.view(-1)[:select.get(name, 0)] += 1.0
        out[name] = s.view(u.shape)
        base += 1e-3
    return out


def test_exact_top_tau_count():
    units = _units()
    scores = {n: torch.rand(u.shape) for n, u in units.items()}
    for tau in (1, 7, 50, 100):
        alloc = allocate(scores, units, tau, rank=4)
        assert alloc['tau'] == tau and sum(alloc['counts'].values()) == tau
        flat = torch.cat([scores[n].flatten() for n in units])
        kth = flat.topk(tau).values[-1]
        for name, count in alloc['counts'].items():
            assert count == int((scores[name] >= kth).sum())
        assert alloc['cost']['total'] <= tau  # thesis rule never exceeds the budget
    # ties are broken by position, deterministically
    tied = {n: torch.ones(u.shape) for n, u in units.items()}
    a = allocate(tied, units, 20, rank=4)
    assert a['counts'] == {'a.weight': 20, 'b.weight': 0, 'n.weight': 0}
    assert torch.equal(a['sparse']['a.weight'], torch.arange(20))


@pytest.mark.parametrize('kind', ['lora', 'adapter'])
def test_structured_switch_at_thesis_threshold(kind):
    units = _units()
    p = structured_cost(kind, 2, 8, 16)  # matrix a: d_out=16, d_in=8
    assert p == (2 * (8 + 16) if kind == 'lora' else 2 * 2 * 16 + 2 + 16)
    below = allocate(_scores({'a.weight': p - 1}), units, p - 1, structured=kind, rank=2)
    assert below['structured'] == [] and below['sparse']['a.weight'].numel() == p - 1
    at = allocate(_scores({'a.weight': p}), units, p, structured=kind, rank=2)
    assert at['structured'] == ['a.weight'] and 'a.weight' not in at['sparse']
    assert at['cost'] == dict(structured=p, vectors=0, sparse=0, total=p)


def test_official_threshold_and_vectors():
    units = _units()
    p = structured_cost('lora', 2, 8, 16)  # 48 -> official threshold 4.8
    kw = dict(rank=2, rule='official', match_budget=False)
    assert allocate(_scores({'a.weight': 4}), units, 4, **kw)['structured'] == []
    assert allocate(_scores({'a.weight': 5}), units, 5, **kw)['structured'] == ['a.weight']
    # vectors: whole when >= d/beta entries are selected (beta 5 -> 2 of 10)
    one = allocate(_scores({'n.weight': 1}), units, 1, **kw)
    two = allocate(_scores({'n.weight': 2}), units, 2, **kw)
    assert one['full_vectors'] == [] and one['sparse']['n.weight'].numel() == 1
    assert two['full_vectors'] == ['n.weight'] and two['cost']['vectors'] == 10
    # thesis: a vector is whole only when all its entries are selected
    assert allocate(_scores({'n.weight': 9}), units, 9, rank=2)['full_vectors'] == []
    assert p > 5


def test_official_matches_budget_and_structured_only():
    units = _units()
    scores = {n: torch.rand(u.shape) for n, u in units.items()}
    alloc = allocate(scores, units, 60, rank=2, rule='official')
    assert alloc['match_budget'] and abs(alloc['cost']['total'] - 60) <= 10
    only = allocate(scores, units, 200, rank=2, rule='official', structured_only=True)
    assert only['sparse'] == {} and only['cost']['sparse'] == 0
    with pytest.raises(ValueError, match='rule'):
        allocate(scores, units, 10, rule='other')
