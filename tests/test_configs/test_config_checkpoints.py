"""Every real-size config (cls and seg; PYRA, LoRA, SPT, FASeg) loads a checkpoint of
the family its ``init_cfg`` names -- the other config tests drop ``init_cfg`` and only
build.

Random weights are written in the naming and shapes of that family (Google's JAX
``.npz`` archives for the original IN-21k ``ViT-B_16.npz`` / ``ViT-L_16.npz``, timm for
the augreg ViTs and DeiT, mmpretrain ``backbone.`` keys for the SPT Swin-B, mmseg's converted
Swin files for FASeg, torchvision for ResNet-50), ``init_cfg.checkpoint`` is pointed at
the file, the
backbone is built and ``init_weights()`` runs; probe tensors (patch embedding, last
block) must come out equal to the written ones, in the right block.

Kept fast (whole file ~90 s on 2 idle cores):

* configs are grouped by resolved backbone config + checkpoint and loaded once per
  group. Groups are found without parsing all 280 leaves: leaves with the same
  ``_base_`` files and the same literal ``model.backbone`` override (the SPT allocation
  path, which only names the task, set aside) resolve to the same backbone -- the 19
  generated VTAB tasks of one method share one. The first member is parsed, and the last
  one too to check that the group shares its backbone; a group that resolves to a
  backbone already loaded in this session reuses that result;
* each checkpoint file is written once per session; only the probes are random, every
  other tensor is a constant stored as one value (so a ViT-L .pth is small; an .npz
  holds every value, deflated at level 1: 1.2 GB of ViT-L arrays make a 6 MB file);
* SPT backbones get a small synthetic allocation (their configs name per-task files
  that the SPT runner computes).
"""
import ast
import copy
import glob
import json
import os.path as osp
import zipfile
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from projects.core.checkpoint.jax_npz import jax_from_timm

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REAL_SIZE = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p and '/embedded/' not in p and 'embedded-seg' not in p
    # stitched ViTs load one checkpoint per anchor: tests/test_esta/test_esta_configs.py
    and '/configs/esta/' not in p)
# ------------------------------------------------------------------ checkpoint families

class Written(NamedTuple):
    path: str
    probes: List[Tuple[str, str, torch.Tensor]]  # (written key, model-key part, value)


def _fill(shapes: Dict[str, torch.Size], probes: Dict[str, str]) -> Dict[str, torch.Tensor]:
    """Probes random; every other tensor one constant, stored as a broadcast view of a
    single value (a ViT-L file is then written and read in milliseconds; loaders copy
    it like any tensor)."""
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) if k in probes
            else torch.tensor(0.01 * (i % 97)).expand(s) for i, (k, s) in enumerate(shapes.items())}


def _float_shapes(module: torch.nn.Module, prefix: str = '') -> Dict[str, torch.Size]:
    return {prefix + k: v.shape for k, v in module.state_dict().items() if v.is_floating_point()}


def timm_vit(embed_dim: int, depth: int, num_heads: int, img_size: int,
             num_classes: int) -> Tuple[dict, Dict[str, str]]:
    """timm ``VisionTransformer`` names (one block built, repeated ``depth`` times)."""
    from timm.models.vision_transformer import VisionTransformer
    with torch.device('meta'):  # names and shapes only
        one = VisionTransformer(img_size=img_size, patch_size=16, embed_dim=embed_dim,
                                depth=1, num_heads=num_heads, num_classes=num_classes)
    shapes = {}
    for key, shape in _float_shapes(one).items():
        if key.startswith('blocks.0.'):
            shapes.update({f'blocks.{i}.{key[9:]}': shape for i in range(depth)})
        else:
            shapes[key] = shape
    probes = {'patch_embed.proj.weight': 'patch_embed',
              f'blocks.{depth - 1}.mlp.fc2.weight': f'.{depth - 1}.'}
    return _fill(shapes, probes), probes


class JaxFile(NamedTuple):
    arrays: Dict[str, np.ndarray]  # JAX names and layouts, written as an .npz
    expected: Dict[str, torch.Tensor]  # the same weights under our names and layouts


def jax_vit(embed_dim: int, depth: int, num_heads: int) -> Tuple[JaxFile, Dict[str, str]]:
    """Google's original IN-21k archive (``ViT-B_16.npz``): JAX names and layouts, the
    21843-class head and the ``pre_logits`` layer those files carry."""
    state, probes = timm_vit(embed_dim, depth, num_heads, 224, 21843)
    arrays = jax_from_timm(state, num_heads)
    arrays['pre_logits/kernel'] = np.broadcast_to(np.float32(0.5), (embed_dim, embed_dim))
    arrays['pre_logits/bias'] = np.broadcast_to(np.float32(0.5), (embed_dim,))
    return JaxFile(arrays, state), probes


def _save_npz(arrays: Dict[str, np.ndarray], path: str) -> None:
    """``np.savez`` at deflate level 1 (its own default level takes 10x longer on a
    ViT-L); constant (zero-stride) arrays are never materialised."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(name + '.npy', 'w', force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def deit(embed_dim: int, num_heads: int) -> Tuple[dict, Dict[str, str]]:
    state, probes = timm_vit(embed_dim, 12, num_heads, 224, 1000)
    return dict(model=state), probes


def mmpretrain_swin(arch: str, img_size: int, window_size: int,
                    num_classes: int) -> Tuple[dict, Dict[str, str]]:
    """An mmpretrain ImageClassifier checkpoint: ``state_dict`` with ``backbone.`` /
    ``head.fc.`` keys (swin2mmpretrain output)."""
    from mmpretrain.models import SwinTransformer
    ref = SwinTransformer(arch=arch, img_size=img_size, window_size=window_size)
    shapes = _float_shapes(ref, 'backbone.')
    channels = ref.num_features[-1]
    shapes.update({'head.fc.weight': torch.Size([num_classes, channels]),
                   'head.fc.bias': torch.Size([num_classes])})
    last = len(ref.stages[-1].blocks) - 1
    probes = {'backbone.patch_embed.projection.weight': 'patch_embed',
              f'backbone.stages.3.blocks.{last}.ffn.layers.1.weight': f'stages.3.blocks.{last}.'}
    return dict(state_dict=_fill(shapes, probes), meta=dict()), probes


def mmseg_swin(embed_dims: int, depths: List[int], num_heads: List[int], window_size: int,
               pretrain_img_size: int) -> Tuple[dict, Dict[str, str]]:
    """mmseg's pretrain/swin files: flat dict of the official weights renamed by
    swin2mmseg (stages / w_msa / ffn / projection); the official final ``norm``, no
    per-stage output norms."""
    from mmseg.models.backbones import SwinTransformer
    ref = SwinTransformer(pretrain_img_size=pretrain_img_size, embed_dims=embed_dims,
                          depths=depths, num_heads=num_heads, window_size=window_size)
    shapes = {k: s for k, s in _float_shapes(ref).items()
              if not (k.startswith('norm') and k[4].isdigit())}
    final = embed_dims * 8
    shapes.update({'norm.weight': torch.Size([final]), 'norm.bias': torch.Size([final])})
    last = depths[-1] - 1
    probes = {'patch_embed.projection.weight': 'patch_embed',
              f'stages.3.blocks.{last}.ffn.layers.1.weight': f'stages.3.blocks.{last}.'}
    return _fill(shapes, probes), probes


def torchvision_resnet50() -> Tuple[dict, Dict[str, str]]:
    from torchvision.models import resnet50
    probes = {'conv1.weight': 'conv1', 'layer4.2.conv3.weight': 'layer4.2.'}
    return _fill(_float_shapes(resnet50()), probes), probes


MMSEG_SWIN_B = dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                    window_size=12, pretrain_img_size=384)
# checkpoint file name (as configs name it) -> writer of that family
FAMILIES: Dict[str, Callable[[], Tuple[dict, Dict[str, str]]]] = {
    'ViT-B_16.npz': lambda: jax_vit(768, 12, 12),
    'ViT-L_16.npz': lambda: jax_vit(1024, 24, 16),
    'vit_small_patch16_224.augreg_in21k.pth': lambda: timm_vit(384, 12, 6, 224, 21843),
    'vit_base_patch16_224.augreg_in21k.pth': lambda: timm_vit(768, 12, 12, 224, 21843),
    'vit_large_patch16_224.augreg_in21k.pth': lambda: timm_vit(1024, 24, 16, 224, 21843),
    'vit_large_patch16_384.augreg_in21k_ft_in1k.pth':
        lambda: timm_vit(1024, 24, 16, 384, 1000),
    'swin-base_in21k-mmpretrain.pth': lambda: mmpretrain_swin('base', 224, 7, 21841),
    'swin_tiny_patch4_window7_224_20220317-1cdeb081.pth': lambda: mmseg_swin(
        96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 224),
    'swin_base_patch4_window12_384_22k_20220317-e5c09f74.pth':
        lambda: mmseg_swin(**MMSEG_SWIN_B),
    'swin_large_patch4_window12_384_22k_20220412-6580f57d.pth':
        lambda: mmseg_swin(**dict(MMSEG_SWIN_B, embed_dims=192, num_heads=[6, 12, 24, 48])),
    'torchvision://resnet50': torchvision_resnet50,
    # facebookresearch/deit releases: timm names under 'model'
    'deit_tiny_patch16_224-a1311bcf.pth': lambda: deit(192, 3),
    'deit_small_patch16_224-cd65a155.pth': lambda: deit(384, 6),
    'deit_base_patch16_224-b5f2ef4d.pth': lambda: deit(768, 12),
}


def _family_name(checkpoint: str) -> str:
    return checkpoint if checkpoint.startswith('torchvision://') else osp.basename(checkpoint)


@pytest.fixture(scope='session')
def written(tmp_path_factory) -> Callable[[str], Written]:
    """Checkpoint files by the name the configs use, each written on first use."""
    cache: Dict[str, Written] = {}

    def get(checkpoint: str) -> Written:
        name = _family_name(checkpoint)
        assert name in FAMILIES, (f'{checkpoint}: no checkpoint family known to this test; '
                                  'add a writer of its naming to FAMILIES')
        if name not in cache:
            content, probes = FAMILIES[name]()
            path = str(tmp_path_factory.mktemp('ckpt') / name.replace('://', '_'))
            if isinstance(content, JaxFile):
                _save_npz(content.arrays, path)
                state = content.expected  # what the backbone must hold
            else:
                torch.save(content, path)
                state = content.get('state_dict', content.get('model', content))
            cache[name] = Written(path, [(k, part, state[k]) for k, part in probes.items()])
        return cache[name]

    return get


# ------------------------------------------------------------------ config groups

def _value(node: ast.AST):
    """A config literal (``dict(...)`` calls included); ValueError for anything else."""
    if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict' \
            and not node.args and all(kw.arg for kw in node.keywords):
        return {kw.arg: _value(kw.value) for kw in node.keywords}
    return ast.literal_eval(node)


def _group_key(path: str) -> str:
    """Same key => same resolved backbone: same bases, same literal backbone override."""
    with open(path) as f:
        body = ast.parse(f.read()).body
    bases, backbone = [], None
    for node in body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        try:
            if name == '_base_':
                bases = _value(node.value)
                bases = [bases] if isinstance(bases, str) else bases
            elif name == 'model':
                if not (isinstance(node.value, ast.Call) and not node.value.args
                        and all(kw.arg for kw in node.value.keywords)):
                    return path
                for kw in node.value.keywords:
                    if kw.arg in ('backbone', '_delete_'):
                        backbone = _value(kw.value) if kw.arg == 'backbone' else path
        except (ValueError, TypeError):
            return path  # not a plain literal: a group of its own
    if backbone == path:
        return path
    if isinstance(backbone, dict) and isinstance(backbone.get('spt_cfg'), dict):
        backbone['spt_cfg'].pop('allocation', None)
    bases = [osp.normpath(osp.join(osp.dirname(path), b)) for b in bases]
    return json.dumps([bases, backbone], sort_keys=True)


def _groups() -> List[List[str]]:
    groups: Dict[str, List[str]] = {}
    for path in REAL_SIZE:
        groups.setdefault(_group_key(path), []).append(path)
    return sorted(groups.values())


def _param(members: List[str]):
    names = [osp.basename(p) for p in members]
    return pytest.param(members,
                        id=names[0] + (f' +{len(names) - 1}' if len(names) > 1 else ''))


GROUPS = _groups()


def test_groups_cover_every_real_size_config():
    assert len(REAL_SIZE) >= 270  # guards against a vacuous pass if the glob breaks
    assert sorted(p for g in GROUPS for p in g) == REAL_SIZE
    # 19 VTAB tasks share one group (~290 leaves make ~55 groups; one each: ~290)
    assert 20 <= len(GROUPS) <= 90, len(GROUPS)


# ------------------------------------------------------------------ loading

def _resolved_backbone(path: str) -> Tuple[str, dict]:
    cfg = Config.fromfile(path)
    return cfg.default_scope, cfg.model.backbone.to_dict()


def _backbone_key(scope: str, backbone: dict) -> str:
    backbone = copy.deepcopy(backbone)
    backbone.get('spt_cfg', {}).pop('allocation', None)
    return json.dumps([scope, backbone], sort_keys=True, default=str)


def _synthetic_allocation(backbone: dict, path: str) -> None:
    """A few structured, sparse and vector units of blocks 0-1 (sizes from a 2-block
    model of the same widths; only named units need a size)."""
    from projects.spt.cache import make_key, save_allocation
    from projects.spt.units import swin_units, vit_units
    spt = backbone['spt_cfg']
    if backbone['type'] == 'SPTSwin':
        from mmpretrain.models import SwinTransformer
        arch = dict(SwinTransformer.arch_zoo[backbone['arch']], depths=[2, 2, 2, 2])
        kw = {k: backbone[k] for k in ('img_size', 'window_size') if k in backbone}
        units = swin_units(SwinTransformer(arch=arch, **kw))
        pre = 'stages.0.blocks.'
        structured = [f'{pre}0.attn.w_msa.q.weight', f'{pre}0.ffn.layers.0.0.weight']
        sparse = {f'{pre}1.attn.w_msa.proj.weight': torch.arange(0, 1000, 7)}
        full_vectors = ['norm3.weight']
    else:
        from projects.pyra import PYRAViT
        arch = dict(PYRAViT._arch_spec(backbone['arch']), num_layers=2)
        kw = {k: backbone[k] for k in ('img_size', 'patch_size', 'qkv_bias', 'layer_scale',
                                       'final_norm') if k in backbone}
        units = vit_units(PYRAViT(arch=arch, **kw))
        structured = ['blocks.0.attn.q.weight', 'blocks.0.mlp.fc1.weight']
        sparse = {'blocks.1.attn.proj.weight': torch.arange(0, 1000, 7)}
        full_vectors = ['norm.weight'] if 'norm.weight' in units else []
    named = structured + full_vectors + list(sparse)
    structured_cfg = spt.get('structured', {})
    alloc = dict(budget=spt['budget'], tau=0, structured_type=structured_cfg.get('type', 'lora'),
                 rank=structured_cfg.get('rank', 8), structured=structured,
                 full_vectors=full_vectors, sparse=sparse, counts={},
                 numel={n: units[n].numel for n in named}, cost={})
    alloc['key'], alloc['key_info'] = make_key('synthetic allocation (config checkpoint test)')
    save_allocation(path, alloc)


def _load_and_check(scope: str, backbone: dict, ckpt: Written, tmp_path) -> None:
    cfg = copy.deepcopy(backbone)
    cfg['init_cfg'] = dict(cfg['init_cfg'], checkpoint=ckpt.path)
    if 'spt_cfg' in cfg:
        cfg['spt_cfg']['allocation'] = str(tmp_path / 'allocation.pth')
        _synthetic_allocation(cfg, cfg['spt_cfg']['allocation'])
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    model = MODELS.build(cfg)
    model.init_weights()
    state = model.state_dict()
    for key, part, value in ckpt.probes:
        found = [k for k, v in state.items() if v.shape == value.shape and torch.equal(v, value)]
        assert any(part in k for k in found), (
            f'{key} of {osp.basename(ckpt.path)} was not loaded into the backbone '
            f'(equal tensors found at {found or "no key"}; expected a key with {part!r})')


@pytest.fixture(scope='session')
def loaded() -> Dict[str, Optional[BaseException]]:
    """Resolved backbone -> outcome of its load in this session (None: passed)."""
    return {}


@pytest.mark.parametrize('members', [_param(g) for g in GROUPS])
def test_real_size_config_loads_its_checkpoint(members, written, loaded, tmp_path):
    scope, backbone = _resolved_backbone(members[0])
    key = _backbone_key(scope, backbone)
    if len(members) > 1:
        assert _backbone_key(*_resolved_backbone(members[-1])) == key, (
            f'{osp.basename(members[-1])} does not share the backbone of '
            f'{osp.basename(members[0])}: the grouping rule of this test is wrong')
    init_cfg = backbone.get('init_cfg') or {}
    assert init_cfg.get('type') == 'Pretrained' and init_cfg.get('checkpoint'), (
        f'{osp.basename(members[0])}: a real-size config must name a pretrained checkpoint')
    if key not in loaded:
        try:
            _load_and_check(scope, backbone, written(init_cfg['checkpoint']), tmp_path)
            loaded[key] = None
        except Exception as err:  # noqa: BLE001  (kept for groups of the same backbone)
            loaded[key] = err
    if loaded[key] is not None:
        raise loaded[key]
