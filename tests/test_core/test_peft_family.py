"""One low-rank PEFT family (issue 21, item 2): one low-rank delta, one foldable
interface (delta, merge, unmerge, merged state dict) implemented by LoRA on q/k/v,
SPT-LoRA, SPT's sparse deltas and ESTA's stitching layer, one model-wide fold.

Tests in the style of HF PEFT's LoRA tests: with a random (non-zero) update, the
unmerged output equals the merged output equals the unmerged-again output, the merged
weights differ from the base, and unmerging restores them. The old checkpoints: the
state-dict layout, the trainable sets and the outputs of tiny models saved *before*
the refactor (``tests/data/peft_state_keys.json``, ``tests/data/peft_reference.pt``,
``tests/data/peft_state_alloc.pth``) are reproduced: the old state dicts load strictly
and give the same outputs.
"""
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from torch import nn

from projects.combos import SPTPYRAViT  # noqa: F401  (registers SPT on PYRAViT)
from projects.core.peft import (CannotFoldError, Foldable, LoRAQKVLinear, NothingToFoldError,
                                fold_in_place, low_rank_delta, low_rank_forward,
                                merged_state_dict, unfold_in_place)
from projects.esta import StitchedViT
from projects.esta.layers import StitchingLayer
from projects.pyra import PYRAViT
from projects.spt import SPTViT
from projects.spt.layers import SPTLayerNorm, SPTLayerScale, SPTLinear
from projects.vit import ComposableViT
from projects.vit.block import LayerScale

DATA = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data')
ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
#: outputs of merged vs unmerged layers: the same linear map summed in another order
ATOL = 1e-5
#: weights after merge + unmerge: w + d - d in float32 (|w|, |d| ~ 1)
W_ATOL = 1e-6


def _rand_(tensor, gen, std=0.5):
    with torch.no_grad():
        tensor.copy_(torch.randn(tensor.shape, generator=gen) * std)


# --------------------------------------------------------------- one low-rank delta
def test_low_rank_delta_and_forward_match_the_elementwise_formula():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, generator=gen), torch.randn(3, 2, generator=gen)
    want = torch.tensor([[0.5 * sum(float(b[i, r] * a[r, j]) for r in range(2))
                          for j in range(4)] for i in range(3)])
    torch.testing.assert_close(low_rank_delta(a, b, 0.5), want)
    x = torch.randn(5, 4, generator=gen)
    torch.testing.assert_close(low_rank_forward(x, a, b, 0.5), x @ want.t())


# ------------------------------------------------------------ the layers, HF style
def _lora_qkv(gen):
    layer = LoRAQKVLinear(8, 24, rank=2, alpha=4, targets=('q', 'v'))
    for p in layer.lora_B.values():
        _rand_(p, gen)
    return layer, ('weight',), lambda m, x: m(x)


def _qkv_segments():
    return {'q': (0, 8), 'k': (8, 16), 'v': (16, 24)}


def _spt_lora(gen):
    layer = SPTLinear.from_linear(nn.Linear(8, 24), _qkv_segments())
    layer.add_structured('k', 'lora', rank=2, scale=0.5)
    _rand_(layer.lora['k'].B, gen)
    return layer, ('weight',), lambda m, x: m(x)


def _spt_sparse_linear(gen):
    layer = SPTLinear.from_linear(nn.Linear(8, 24), _qkv_segments())
    layer.weight.requires_grad_(False)
    layer.add_sparse_weight(torch.tensor([0, 9, 30, 100, 191]))
    layer.add_sparse_bias(torch.tensor([1, 23]))
    layer.add_structured('q', 'lora', rank=2)  # sparse and LoRA on one weight
    for p in (layer.sparse_weight.values, layer.sparse_bias.values, layer.lora['q'].B):
        _rand_(p, gen)
    return layer, ('weight', 'bias'), lambda m, x: m(x)


def _spt_sparse_norm(gen):
    layer = SPTLayerNorm.from_norm(nn.LayerNorm(8))
    layer.add_sparse('weight', torch.tensor([0, 5]))
    layer.add_sparse('bias', torch.arange(8))
    _rand_(layer.sparse_weight.values, gen)
    _rand_(layer.sparse_bias.values, gen)
    return layer, ('weight', 'bias'), lambda m, x: m(x)


def _spt_sparse_layer_scale(gen):
    layer = SPTLayerScale.from_layer_scale(LayerScale(8, 0.5))
    layer.add_sparse('gamma', torch.tensor([1, 2, 7]))
    _rand_(layer.sparse_gamma.values, gen)
    return layer, ('gamma',), lambda m, x: m(x)


def _esta_stitch(gen):
    layer = StitchingLayer(8, 12, rank=2, stitch_users=[3, 5])
    _rand_(layer.lora_B, gen)
    _rand_(layer.stitch_bias, gen, 0.1)
    return layer, ('weight',), lambda m, x: m(x, stitch=5)


LAYERS = {'lora-qkv': _lora_qkv, 'spt-lora': _spt_lora, 'spt-sparse-linear': _spt_sparse_linear,
          'spt-sparse-layernorm': _spt_sparse_norm,
          'spt-sparse-layerscale': _spt_sparse_layer_scale, 'esta-stitching-layer': _esta_stitch}


@pytest.mark.parametrize('kind', list(LAYERS))
def test_unmerged_equals_merged_equals_unmerged_again(kind):
    gen = torch.Generator().manual_seed(1)
    layer, leaves, run = LAYERS[kind](gen)
    assert isinstance(layer, Foldable)
    layer.eval()
    x = torch.randn(3, 5, 8, generator=gen)
    base = {leaf: getattr(layer, leaf).detach().clone() for leaf in leaves}
    with torch.no_grad():
        unmerged = run(layer, x)
        layer.merge()
        assert layer.merged
        merged = run(layer, x)
        for leaf in leaves:  # merged != base, by the delta
            torch.testing.assert_close(getattr(layer, leaf) - base[leaf],
                                       layer.delta_weights()[leaf], atol=W_ATOL, rtol=0)
            assert (getattr(layer, leaf) - base[leaf]).abs().max() > 1e-2, leaf
        exported = layer.merged_state_dict()
        layer.merge()  # idempotent
        twice = run(layer, x)
        layer.unmerge()
        again = run(layer, x)
    torch.testing.assert_close(merged, unmerged, atol=ATOL, rtol=0)
    torch.testing.assert_close(twice, merged, atol=0, rtol=0)
    torch.testing.assert_close(again, unmerged, atol=ATOL, rtol=0)
    assert not layer.merged
    for leaf in leaves:
        torch.testing.assert_close(getattr(layer, leaf), base[leaf], atol=W_ATOL, rtol=0)
        # the export holds the merged tensor, computed from the same one delta
        torch.testing.assert_close(exported[leaf], base[leaf] + layer.delta_weights()[leaf],
                                   atol=0, rtol=0)
    # the export drops exactly the update's own tensors
    dropped = set(layer.state_dict()) - set(exported)
    assert dropped == set(layer.folded_away_names()) and dropped


def test_the_same_delta_merges_in_every_layer():
    """The three LoRAs compute their dense update with the one function."""
    gen = torch.Generator().manual_seed(2)
    qkv, _, _ = _lora_qkv(gen)
    want = torch.zeros(24, 8)
    want[0:8] = low_rank_delta(qkv.lora_A['q'], qkv.lora_B['q'], 2.0)
    want[16:24] = low_rank_delta(qkv.lora_A['v'], qkv.lora_B['v'], 2.0)
    torch.testing.assert_close(qkv.delta_weight(), want)
    spt, _, _ = _spt_lora(gen)
    lora = spt.lora['k']
    torch.testing.assert_close(spt.delta_weights()['weight'][8:16],
                               low_rank_delta(lora.A, lora.B, 0.5), atol=0, rtol=0)
    stitch, _, _ = _esta_stitch(gen)
    torch.testing.assert_close(stitch.delta_weights()['weight'],
                               low_rank_delta(stitch.lora_A, stitch.lora_B), atol=0, rtol=0)


# -------------------------------------------------------- old checkpoints, one fold
def _reference_models():
    """The tiny models of tests/data/peft_*, built by the current code as the
    unrefactored code built them (tools: /tmp snapshot script of issue 21)."""
    torch.manual_seed(0)
    pyra = PYRAViT(arch=ARCH, img_size=32, patch_size=8, merge_mode='pyra',
                   merge_schedule=[3, 2], frozen=True,
                   lora_cfg=dict(rank=2, alpha=4, targets=('q', 'v')))
    kw = dict(arch=ARCH, img_size=32, patch_size=8, out_type='featmap')
    spt = SPTViT(spt_cfg=dict(allocation=osp.join(DATA, 'peft_state_alloc.pth'),
                              structured=dict(type='lora', rank=2, dropout=0.0)), **kw)

    def anchor(dim, heads):
        return dict(arch=dict(embed_dims=dim, num_layers=2, num_heads=heads,
                              feedforward_channels=2 * dim),
                    img_size=28, patch_size=14, lora_cfg=dict(rank=2, alpha=2))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        esta = StitchedViT([anchor(16, 2), anchor(32, 4)], stitch_lora_rank='d/4')
    return {'pyra_lora': pyra, 'spt_lora': spt, 'esta': esta}


ESTA_STITCH = 5


def _run(name, model, x):
    with torch.no_grad():
        return model(x, stitch=ESTA_STITCH)[0] if name == 'esta' else model(x)[0]


@pytest.fixture(scope='module')
def reference():
    with open(osp.join(DATA, 'peft_state_keys.json')) as f:
        layout = json.load(f)
    return layout, torch.load(osp.join(DATA, 'peft_reference.pt'), weights_only=True)


def test_old_state_dicts_load_strictly_with_the_same_roles_and_outputs(reference):
    layout, saved = reference
    for name, model in _reference_models().items():
        keys = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert keys == layout[name]['keys'], name  # names unchanged: lora_A.q, A / B, ...
        trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        assert trainable == layout[name]['trainable'], name  # from declarations only
        model.load_state_dict(saved[name]['state'], strict=True)
        model.eval()
        torch.testing.assert_close(_run(name, model, saved[name]['x']), saved[name]['y'],
                                   atol=1e-6, rtol=0)


def test_one_fold_for_every_method_matches_the_unrefactored_outputs(reference):
    _, saved = reference
    for name, model in _reference_models().items():
        model.load_state_dict(saved[name]['state'])
        model.eval()
        x, y = saved[name]['x'], saved[name]['y']
        # the plain model loads the merged state dict strictly and gives the output
        if name == 'esta':
            cfg = model.plain_backbone_cfg(dict(anchors=model.anchor_cfgs), ESTA_STITCH)
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                plain = StitchedViT(**cfg).eval()
            plain.load_state_dict(model.folded_state_dict(ESTA_STITCH), strict=True)
        else:
            plain = (PYRAViT if name == 'pyra_lora' else ComposableViT)(
                **{k: v for k, v in model.plain_backbone_cfg(_cfg_of(name)).items()
                   if k != 'type'}).eval()
            plain.load_state_dict(merged_state_dict(model), strict=True)
        torch.testing.assert_close(_run(name, plain, x), y, atol=ATOL, rtol=0)
        # in place: every foldable layer of the method, then back
        before = {k: v.clone() for k, v in model.state_dict().items()}
        n = fold_in_place(model)
        if name == 'spt_lora':
            assert n == len(model.spt_layers())
        else:  # 2 blocks of LoRA per ViT (+ the stitching layers' LoRA)
            assert n == (2 if name == 'pyra_lora' else 2 * 2 + len(model.stitch_layers))
        torch.testing.assert_close(_run(name, model, x), y, atol=ATOL, rtol=0)
        assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert unfold_in_place(model) == n
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, before[key], atol=W_ATOL, rtol=0)
        torch.testing.assert_close(_run(name, model, x), y, atol=ATOL, rtol=0)


def _cfg_of(name):
    if name == 'pyra_lora':
        return dict(arch=ARCH, img_size=32, patch_size=8, merge_mode='pyra',
                    merge_schedule=[3, 2], lora_cfg=dict(rank=2, alpha=4, targets=('q', 'v')))
    return dict(type='SPTViT', arch=ARCH, img_size=32, patch_size=8, out_type='featmap',
                spt_cfg={})


def test_nothing_to_fold_and_cannot_fold(tmp_path, make_spt_allocation):
    plain = ComposableViT(arch=ARCH, img_size=32, patch_size=8)
    with pytest.raises(NothingToFoldError, match='ComposableViT has no parameter-efficient '
                       'update to fold .* already is a plain model'):
        fold_in_place(plain)
    assert fold_in_place(plain, missing_ok=True) == 0
    assert merged_state_dict(plain, missing_ok=True).keys() == plain.state_dict().keys()
    # SPT-Adapter: refused before any weight changes
    kw = dict(arch=ARCH, img_size=32, patch_size=8, out_type='featmap')
    path = tmp_path / 'adapter.pth'
    make_spt_allocation(path, kw, budget=3000, structured='adapter')
    model = SPTViT(spt_cfg=dict(allocation=str(path), structured=dict(type='adapter', rank=2)),
                   **kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CannotFoldError, match='SPT-Adapter modules are non-linear and cannot '
                       'be folded'):
        fold_in_place(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m.merged for m in model.spt_layers().values())


@pytest.fixture
def make_spt_allocation():
    from projects.spt.allocation import allocate
    from projects.spt.cache import make_key, save_allocation
    from projects.spt.units import vit_units

    def write(path, vit_kwargs, budget, structured='lora', rank=2):
        units = vit_units(PYRAViT(**vit_kwargs))
        gen = torch.Generator().manual_seed(0)
        scores = {n: torch.rand(u.shape, generator=gen) for n, u in units.items()}
        alloc = allocate(scores, units, budget, structured=structured, rank=rank)
        key, info = make_key(dict(test=str(path), budget=budget))
        alloc.update(key=key, key_info=info)
        save_allocation(str(path), alloc)
        return alloc
    return write


def test_merged_layers_skip_the_update_in_the_forward():
    """After merge the forward is the plain op on the merged tensors (no double count)."""
    gen = torch.Generator().manual_seed(3)
    layer, _, _ = _lora_qkv(gen)
    x = torch.randn(2, 8, generator=gen)
    with torch.no_grad():
        layer.merge()
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias),
                                   atol=0, rtol=0)
