"""Fixtures of the SPT tests: allocation files for tiny PYRAViTs."""
import pytest
import torch

from projects.pyra import PYRAViT
from projects.spt.allocation import allocate
from projects.spt.cache import make_key, save_allocation
from projects.spt.units import vit_units


def write_allocation(path, vit_kwargs, budget, structured='lora', rank=2, seed=0,
                     **alloc_kw):
    """Allocation of a PYRAViT(**vit_kwargs) from random scores, saved to ``path``."""
    plain = PYRAViT(**vit_kwargs)
    units = vit_units(plain)
    gen = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(u.shape, generator=gen) for n, u in units.items()}
    alloc = allocate(scores, units, budget, structured=structured, rank=rank, **alloc_kw)
    key, info = make_key(dict(test=str(path), budget=budget))
    alloc.update(key=key, key_info=info)
    save_allocation(str(path), alloc)
    return alloc


@pytest.fixture
def make_allocation():
    return write_allocation
