"""SPTViT: the trainable set is exactly the allocation (gradients and optimizer state
sized by the selected entries), folding and export into the plain PYRAViT, clear
errors for corrupt / mismatched caches."""
import pytest
import torch

from projects.combos import SPTPYRAViT
from projects.pyra import PYRAViT
from projects.spt import SPTCacheError, SPTViT, load_allocation
from projects.spt.layers import SPTLayerNorm, SPTLinear
from projects.spt.units import vit_units


def _kw(tiny_arch, merge_mode='none'):
    kw = dict(arch=tiny_arch, img_size=32, patch_size=8, out_type='featmap')
    if merge_mode != 'none':
        kw.update(merge_mode=merge_mode, merge_schedule=[3, 2, 2, 1])
    return kw


def _spt(path, kw, structured='lora', rank=2):
    """SPTViT, or SPTPYRAViT when ``kw`` merges."""
    spt = SPTPYRAViT if 'merge_mode' in kw else SPTViT
    return spt(spt_cfg=dict(allocation=str(path),
                            structured=dict(type=structured, rank=rank, dropout=0.0)),
               **kw)


def test_trainable_set_gradients_and_optimizer_state(tiny_arch, tmp_path, make_allocation):
    kw = _kw(tiny_arch)
    path = tmp_path / 'alloc.pth'
    # budget well above one LoRA (2*(32+32)=128) so both granularities occur
    alloc = make_allocation(path, kw, budget=3000)
    assert alloc['structured'] and alloc['sparse'], alloc['cost']
    model = _spt(path, kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spt = model.spt_parameters()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(trainable) == set(spt)
    assert sum(p.numel() for p in spt.values()) == alloc['cost']['total']
    sparse_sizes = {n: p.numel() for n, p in spt.items() if n.endswith('.values')}
    assert sum(sparse_sizes.values()) == alloc['cost']['sparse'] + alloc['cost']['vectors']

    opt = torch.optim.AdamW(trainable.values(), lr=1e-2)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(2):
        opt.zero_grad()
        model(x)[0].square().mean().backward()
        opt.step()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in spt), name
    for p in trainable.values():  # optimizer state as large as the trained entries only
        state = opt.state[p]
        assert state['exp_avg'].shape == p.shape and state['exp_avg_sq'].shape == p.shape
    assert len(opt.state) == len(trainable)
    assert sum(s['exp_avg'].numel() for s in opt.state.values()) == alloc['cost']['total']
    # frozen tensors are untouched; the folded update of an unstructured-only matrix
    # is non-zero exactly at its selected entries
    for k, v in model.state_dict().items():
        if k in before and k in model.plain_keys:
            assert torch.equal(v, before[k]), k
    units = vit_units(PYRAViT(**kw))
    folded = model.folded_state_dict()
    checked = 0
    for name, idx in alloc['sparse'].items():
        unit = units[name]
        if unit.kind != 'matrix' or unit.rows is not None:
            continue
        layer = model.get_submodule(unit.param.rpartition('.')[0])
        if len(layer.lora):
            continue
        diff = (folded[unit.param] - before[unit.param]).flatten()
        changed = torch.nonzero(diff).flatten()
        assert torch.equal(changed, torch.sort(idx).values), name
        checked += 1
    assert checked > 0


@pytest.mark.parametrize('merge_mode', ['none', 'pyra'])
def test_folded_equals_unfolded_and_loads_into_plain(tiny_arch, tmp_path, make_allocation,
                                                     merge_mode):
    kw = _kw(tiny_arch, merge_mode)
    path = tmp_path / 'alloc.pth'
    alloc = make_allocation(path, kw, budget=3000)
    model = _spt(path, kw).eval()
    pyra = {n for n, p in model.named_parameters() if '.pyra_' in n}
    assert (len(pyra) > 0) == (merge_mode == 'pyra')
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        set(model.spt_parameters()) | pyra  # PYRA's generators train with SPT
    assert any(isinstance(m, SPTLayerNorm) for m in model.modules())
    assert any(isinstance(m, SPTLinear) and len(m.lora) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        at_init = model(x)[0]
        for name, p in model.spt_parameters().items():
            p.normal_(std=0.2)
        adapted = model(x)[0]
    assert not torch.allclose(at_init, adapted, atol=1e-4)  # non-vacuous
    folded = model.folded_state_dict()
    plain = PYRAViT(**kw).eval()
    plain.load_state_dict(folded)  # strict: exactly the plain key set
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], adapted, atol=1e-5, rtol=1e-5)
        assert model.merge_spt() > 0
        torch.testing.assert_close(model(x)[0], adapted, atol=1e-5, rtol=1e-5)
    assert alloc['cost']['total'] <= 3000


def test_adapter_trains_but_does_not_fold(tiny_arch, tmp_path, make_allocation):
    kw = _kw(tiny_arch)
    path = tmp_path / 'alloc.pth'
    alloc = make_allocation(path, kw, budget=3000, structured='adapter')
    assert alloc['structured']
    model = _spt(path, kw, structured='adapter')
    assert sum(p.numel() for p in model.spt_parameters().values()) == alloc['cost']['total']
    model(torch.randn(1, 3, 32, 32))[0].sum().backward()
    with pytest.raises(ValueError, match='cannot be folded'):
        model.folded_state_dict()
    with pytest.raises(ValueError, match='differs from the allocation'):
        _spt(path, kw, structured='lora')


def test_corrupt_and_mismatched_cache(tiny_arch, tmp_path, make_allocation):
    kw = _kw(tiny_arch)
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'this is not a checkpoint')
    with pytest.raises(SPTCacheError, match='corrupt SPT allocation cache .*bad.pth'):
        load_allocation(str(bad))
    with pytest.raises(SPTCacheError, match='corrupt'):
        _spt(bad, kw)
    torch.save({'some': 'dict'}, tmp_path / 'other.pth')
    with pytest.raises(SPTCacheError, match='not an MMAdapt SPT allocation'):
        load_allocation(str(tmp_path / 'other.pth'))
    with pytest.raises(FileNotFoundError, match='SPTRunner'):
        _spt(tmp_path / 'missing.pth', kw)
    good = tmp_path / 'good.pth'
    alloc = make_allocation(good, kw, budget=500)
    assert load_allocation(str(good), alloc['key'])['tau'] == 500
    with pytest.raises(SPTCacheError, match='mismatched SPT allocation cache'):
        load_allocation(str(good), 'another-key', '{"budget": 1}')
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(SPTCacheError, match='corrupt'):
        load_allocation(str(truncated))
    # an allocation of another architecture
    wide = dict(kw, arch=dict(tiny_arch, embed_dims=48, feedforward_channels=96))
    with pytest.raises(ValueError, match='different model'):
        _spt(good, wide)


def _edited(tmp_path, source, name, edit):
    """A copy of the allocation file ``source`` changed by ``edit(data)``."""
    data = torch.load(source, weights_only=True)
    edit(data)
    path = tmp_path / name
    torch.save(data, path)
    return path


def _drop(data, unit):
    for field in ('structured', 'full_vectors'):
        if unit in data[field]:
            data[field].remove(unit)
    data['sparse'].pop(unit, None)


def test_inconsistent_allocation_is_a_clear_error(tiny_arch, tmp_path, make_allocation):
    """Damaged or hand-edited allocation files are refused with the file, the entry at
    fault and the fix, before any module is replaced (no AttributeError from the
    surgery, no silently shifted index)."""
    kw = _kw(tiny_arch)
    good = tmp_path / 'good.pth'
    alloc = make_allocation(good, kw, budget=3000)
    assert alloc['structured'] and alloc['sparse']
    units = vit_units(PYRAViT(**kw))
    vector = 'blocks.0.norm1.weight'
    assert units[vector].kind == 'vector'

    def vector_as_structured(data):
        _drop(data, vector)
        data['structured'].append(vector)

    kinds = _edited(tmp_path, good, 'kinds.pth', vector_as_structured)
    with pytest.raises(ValueError, match=r'SPT allocation .*kinds\.pth is inconsistent') as err:
        _spt(kinds, kw)
    assert f"'{vector}' is listed under 'structured' but is a vector unit" in str(err.value)
    assert 'delete it and train with SPTRunner' in str(err.value)

    matrix = alloc['structured'][0]

    def matrix_as_vector(data):
        data['structured'].remove(matrix)
        data['full_vectors'].append(matrix)

    with pytest.raises(ValueError, match=f"'{matrix}' is listed under 'full_vectors' but "
                       'is a matrix unit'):
        _spt(_edited(tmp_path, good, 'matrix.pth', matrix_as_vector), kw)

    # an index past the end of its unit: for a q/k/v third it would land in the next
    # third, for a whole tensor past its end
    unit = next(iter(alloc['sparse']))
    numel = units[unit].numel

    def out_of_range(data):
        data['sparse'][unit] = torch.cat([data['sparse'][unit][:-1], torch.tensor([numel])])

    far = _edited(tmp_path, good, 'range.pth', out_of_range)
    for load in (lambda: load_allocation(str(far)), lambda: _spt(far, kw)):
        with pytest.raises(SPTCacheError, match=r'corrupt SPT allocation cache .*range\.pth: '
                           rf"sparse\['{unit}'\] has indices out of range: \[\d+, {numel}\] "
                           f'for a unit of {numel} entries') as err:
            load()
        assert 'Delete' in str(err.value)

    def listed_twice(data):
        data['full_vectors'].append(unit)

    with pytest.raises(SPTCacheError, match=rf"twice\.pth: '{unit}' is listed under both"):
        load_allocation(str(_edited(tmp_path, good, 'twice.pth', listed_twice)))
