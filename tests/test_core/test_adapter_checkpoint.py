"""Adapter-only checkpoints (issue 21, item 3): adapter-only + base == the full
checkpoint, bit for bit, for LoRA, SPT-LoRA, PYRA and DyT tiny classifiers; what is
saved is what the modules declare (checked against independent name patterns); bad
input -- a wrong base, no base, a full checkpoint where an adapter-only one is
expected, another model, a base changed during training.

Training is simulated: every trainable tensor is moved off its initial value (the
runs through mmengine's runner and ``--resume`` are in
tests/test_tools/test_resume.py)."""
import os.path as osp
import re
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from projects.core.checkpoint.adapter_only import (META_KEY, AdapterBaseError,
                                                   adapter_state_keys, base_record,
                                                   load_model_weights,
                                                   to_adapter_checkpoint)
from projects.vit import ComposableViT

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
VIT = dict(arch=ARCH, img_size=32, patch_size=8, out_type='cls_token')
DYT_BLOCKS = dict(mlp_gate=dict(type='DyTDispatcher'),
                  adapter=dict(type='DyTAdapter', bottleneck=4))
#: (backbone options, name pattern of the backbone tensors the method adds): the
#: pattern is an independent reference of what an adapter-only file must hold
METHODS = {
    'lora': (dict(type='ComposableViT', frozen=True, lora_cfg=dict(rank=2)), r'\.lora_[AB]\.'),
    'pyra': (dict(type='PYRAViT', frozen=True, lora_cfg=dict(rank=2), merge_mode='pyra',
                  merge_schedule=[3, 2]), r'\.lora_[AB]\.|\.pyra_'),
    'dyt': (dict(type='ComposableViT', frozen=True, block_cfg=DYT_BLOCKS),
            r'\.mlp_gate\.|\.adapter\.'),
    'spt-lora': (dict(type='SPTViT'), r'\.sparse_(weight|bias)\.|\.lora\.[a-z]+\.[AB]$'),
}


def _write_base(path, seed: int) -> str:
    """A pretrained plain ViT (random weights of a fixed seed), as a checkpoint."""
    torch.manual_seed(seed)
    vit = ComposableViT(**VIT)
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_(std=0.1)
    torch.save({'state_dict': vit.state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('adapter_only')
    from projects.spt.allocation import allocate
    from projects.spt.cache import make_key, save_allocation
    from projects.spt.units import vit_units
    units = vit_units(ComposableViT(**VIT))
    gen = torch.Generator().manual_seed(0)
    alloc = allocate({n: torch.rand(u.shape, generator=gen) for n, u in units.items()},
                     units, 3000, structured='lora', rank=2)
    key, info = make_key(dict(test='adapter-only'))
    alloc.update(key=key, key_info=info)
    save_allocation(str(root / 'alloc.pth'), alloc)
    return dict(root=root, alloc=str(root / 'alloc.pth'), base=_write_base(root / 'base.pth', 0),
                other=_write_base(root / 'other_base.pth', 1))


def _model_cfg(files, method: str, base=None) -> dict:
    backbone = dict(VIT, **METHODS[method][0])
    if method == 'spt-lora':
        backbone['spt_cfg'] = dict(allocation=files['alloc'],
                                   structured=dict(type='lora', rank=2, dropout=0.0))
    backbone['init_cfg'] = None if base is False else dict(
        type='Pretrained', checkpoint=base or files['base'])
    return dict(type='ImageClassifier', backbone=backbone, neck=None,
                head=dict(type='LinearClsHead', num_classes=5, in_channels=32,
                          loss=dict(type='CrossEntropyLoss')))


def _build(cfg: dict, seed: int):
    torch.manual_seed(seed)  # another random init than the trained model's
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def _trained(files, method: str):
    """A model with its base loaded and every trainable tensor changed."""
    model = _build(_model_cfg(files, method), 0)
    model.init_weights()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def _save(model, path, adapter: bool) -> str:
    checkpoint = {'meta': {}, 'state_dict': OrderedDict(model.state_dict())}
    if adapter:
        to_adapter_checkpoint(checkpoint, model, base_record(model))
    torch.save(checkpoint, path)
    return str(path)


@pytest.mark.parametrize('method', list(METHODS))
def test_adapter_plus_base_equals_the_full_checkpoint(files, method):
    model = _trained(files, method)
    full = model.state_dict()
    root = files['root']
    adapter_path = _save(model, root / f'{method}_adapter.pth', adapter=True)
    full_path = _save(model, root / f'{method}_full.pth', adapter=False)
    # what is saved: the method's tensors, the head, the buffers -- no base tensor
    saved = torch.load(adapter_path, weights_only=True)['state_dict']
    pattern = re.compile(METHODS[method][1])
    buffers = {f'{n}' for n, _ in model.named_buffers()} & set(full)
    want = {k for k in full if not k.startswith('backbone.') or pattern.search(k)} | buffers
    assert set(saved) == want
    assert all(k in saved for k, p in model.named_parameters() if p.requires_grad)
    assert osp.getsize(adapter_path) < osp.getsize(full_path) / 3
    # a fresh model of the config: base from init_cfg + adapter == full, bit for bit
    fresh = _build(_model_cfg(files, method), 1)
    assert any(not torch.equal(v, full[k]) for k, v in fresh.state_dict().items())
    checkpoint = load_model_weights(fresh, adapter_path)
    assert checkpoint['meta'][META_KEY]['base_sources'] == [
        dict(module='backbone', checkpoint=files['base'])]
    got = fresh.state_dict()
    assert got.keys() == full.keys()
    for key, value in full.items():
        assert torch.equal(got[key], value), key


def test_wrong_base_no_base_and_full_checkpoint(files):
    model = _trained(files, 'lora')
    adapter = _save(model, files['root'] / 'bad_adapter.pth', adapter=True)
    full = _save(model, files['root'] / 'bad_full.pth', adapter=False)
    # another base file: refused, naming the adapter, both bases and the fix
    other = _build(_model_cfg(files, 'lora', base=files['other']), 1)
    with pytest.raises(AdapterBaseError) as err:
        load_model_weights(other, adapter)
    msg = str(err.value)
    assert f'{adapter} is an adapter-only checkpoint trained on the base ' \
           f'model.backbone.init_cfg.checkpoint={files["base"]}' in msg
    assert f'this config loads model.backbone.init_cfg.checkpoint={files["other"]}, ' \
           'whose tensors differ' in msg
    assert 'Point init_cfg.checkpoint at the base the adapter was trained on' in msg
    # no base in the config
    bare = _build(_model_cfg(files, 'lora', base=False), 1)
    with pytest.raises(AdapterBaseError, match=rf'{re.escape(adapter)} is an adapter-only '
                       r'checkpoint \(\d+ adapter / head tensors\): its frozen base comes from '
                       r'the pretrained init_cfg checkpoint of the config, but this '
                       r'ImageClassifier has none\. It was trained on '
                       rf'.*{re.escape(files["base"])}'):
        load_model_weights(bare, adapter)
    # a full checkpoint where an adapter-only one is expected just loads (no base read)
    load_model_weights(bare, full)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bare.state_dict().items())
    # an adapter of another model (SPT-LoRA's file under the LoRA config)
    spt = _save(_trained(files, 'spt-lora'), files['root'] / 'spt_adapter.pth', adapter=True)
    with pytest.raises(AdapterBaseError, match='adapter-only checkpoint of another model'):
        load_model_weights(_build(_model_cfg(files, 'lora'), 1), spt)


def test_saving_refuses_a_changed_base_and_a_model_without_base(files):
    model = _trained(files, 'lora')
    record = base_record(model)
    with torch.no_grad():
        model.backbone.blocks[0].attn.qkv.weight.add_(1.0)  # e.g. LoRA merged in place
    with pytest.raises(RuntimeError, match=r"frozen base tensors changed during training "
                       r"\(1, e\.g\. \['backbone\.blocks\.0\.attn\.qkv\.weight'\]\)"):
        to_adapter_checkpoint({'meta': {}, 'state_dict': model.state_dict()}, model, record)
    with pytest.raises(ValueError, match="save_mode='adapter' needs a frozen base loaded from "
                       'a pretrained checkpoint'):
        base_record(_build(_model_cfg(files, 'lora', base=False), 0))
    with pytest.raises(ValueError, match='has no model.backbone'):
        adapter_state_keys(torch.nn.Linear(2, 2))
