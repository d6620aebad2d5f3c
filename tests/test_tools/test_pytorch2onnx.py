"""ONNX export (tools/deployment/pytorch2onnx.py, projects/core/deployment/onnx_export.py)
against onnxruntime as the independent reference.

Every case exports a tiny random model, runs the graph with onnxruntime on the traced
input and on inputs the trace has not seen, and asserts every output within 1e-4 of its
scale (max |onnx - torch| <= 1e-4 * max(1, max |torch|)) of PyTorch's. The merging
cases also assert that the input really merges two sources into one destination in
some layer: that is what the graph got wrong before (``index_add_`` with repeated
indices exported as a Scatter that keeps one write).
"""
import copy
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import projects.pyra.merger as merger_mod
from projects.core.deployment.onnx_export import (ExportRefused, TensorForward, check_onnx,
                                             deployable_model, export_and_check,
                                             export_onnx, ort_session, refusal_reason,
                                             tolerance, use_dense_gates)
from projects.pyra import PYRAViT
from projects.pyra.token_merge import bipartite_soft_matching

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TESTS = osp.join(REPO, 'tests')
TINY = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


pytestmark = pytest.mark.usefixtures('one_thread')


def _load(path: str, name: str):
    """A helper module of another test folder, under a name of its own."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jitter(model: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Every float tensor moved off its init (LoRA B, PYRA's W_D, pos_embed are zero
    at build), running variances kept positive."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            noise = scale * torch.randn(t.shape, generator=gen)
            t.copy_(t.abs() + noise.abs() if name.endswith('running_var') else t + noise)
    return model.eval()


def rand(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def assert_exports_equal(module, example, reference=None, more=1, also=()):
    """Export on ``example``, check on it and ``more`` unseen inputs against
    ``reference`` (default: ``module``) and every module of ``also``; returns the ONNX
    model (the assertions print every output's difference)."""
    checks = {f'random input {i}': rand(*example.shape, seed=100 + i) for i in range(more)}
    data, report = export_and_check(module, example, checks, raise_on_mismatch=False,
                                    reference=reference, threads=1)
    assert report.ok, report.summary()
    for other in also:
        report = check_onnx(other, ort_session(data, 1), {'the traced input': example, **checks},
                            [f'output_{i}' for i in range(8)])
        assert report.ok, report.summary()
    return data


def vit(**kw) -> PYRAViT:
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return jitter(PYRAViT(arch=kw.pop('arch', TINY), patch_size=8, **kw))


def count_shared_destinations(model, x, monkeypatch) -> int:
    """How many (layer, sample) matchings send two or more sources to one destination."""
    found = []

    def spy(*args, **kwargs):
        matching = bipartite_soft_matching(*args, **kwargs)
        if matching is not None:
            for row in matching.dst_idx[..., 0]:
                found.append(len(row) - len(set(row.tolist())))
        return matching

    monkeypatch.setattr(merger_mod, 'bipartite_soft_matching', spy)
    with torch.no_grad():
        model(x)
    monkeypatch.undo()
    return sum(1 for n in found if n > 0)


# ----------------------------------------------------------------- plain, LoRA
def test_tolerance_is_relative_to_the_scale_with_a_floor():
    assert tolerance(np.array([0.5, -0.2])) == pytest.approx(1e-4)
    assert tolerance(np.array([-30.0, 2.0])) == pytest.approx(3e-3)


def test_plain_vit():
    model = vit(img_size=(32, 48), out_type='featmap')
    assert_exports_equal(model, rand(2, 3, 32, 48))


def test_lora_folded_classifier_equals_the_lora_model(tmp_path):
    """deployable_model folds LoRA (deploy.py) from a checkpoint into the plain config;
    the graph equals the LoRA model it came from."""
    cfg = Config(dict(
        default_scope='mmpretrain',
        model=dict(type='ImageClassifier',
                   backbone=dict(type='PYRAViT', arch=TINY, img_size=(32, 40), patch_size=8,
                                 out_type='cls_token', lora_cfg=dict(rank=4, alpha=8)),
                   neck=None,
                   head=dict(type='LinearClsHead', num_classes=5, in_channels=32))))
    lora = deployable_model(cfg, fold=False).model
    jitter(lora)
    ckpt = str(tmp_path / 'lora.pth')
    torch.save({'state_dict': lora.state_dict()}, ckpt)
    deploy = deployable_model(cfg, ckpt)
    assert deploy.folded and not any('lora' in k for k in deploy.model.state_dict())
    x = rand(2, 3, 32, 40)
    with torch.no_grad():
        want = lora(x, mode='tensor')
        assert (deploy.model(x, mode='tensor') - want).abs().max() <= 1e-5
    assert_exports_equal(TensorForward(deploy.model), x, also=[TensorForward(lora)])


# -------------------------------------------------------------------- merging
MERGE_CASES = [
    # mode, out_type, build size (the export size): square and non-square grids
    ('tome', 'cls_token', (48, 48)),
    ('tome', 'featmap', (40, 56)),
    ('pyra', 'cls_token', (40, 56)),
    ('pyra', 'featmap', (48, 48)),
    ('pyra', 'featmap', (56, 32)),
]


@pytest.mark.parametrize('mode,out_type,size', MERGE_CASES)
def test_merging_exports_equal(mode, out_type, size, monkeypatch):
    """ToMe / PYRA, classification and dense (featmap: unmerged to the full grid)."""
    grid = (size[0] // 8, size[1] // 8)
    model = vit(img_size=size, out_type=out_type, merge_mode=mode,
                merge_schedule=[max(1, grid[0] * grid[1] >> (i + 2)) for i in range(4)])
    x = rand(2, 3, *size)
    assert count_shared_destinations(model, x, monkeypatch) > 0
    with torch.no_grad():
        out = model(x)[0]
    assert out.shape == ((2, 32, *grid) if out_type == 'featmap' else (2, 32))
    assert_exports_equal(model, x)


def test_merging_segmentor_exports_equal(monkeypatch):
    """UPerNet over a ToMe ViT whose four taps are unmerged to the grid, through
    encode_decode with fixed metainfo (logits at the input size)."""
    cfg = Config(dict(default_scope='mmseg', model=dict(
        type='EncoderDecoder',
        backbone=dict(type='PYRAViT', arch=TINY, img_size=(64, 96), patch_size=8,
                      out_type='featmap', out_indices=(0, 1, 2, 3), final_norm=False,
                      merge_mode='tome', merge_schedule=[24, 12, 6, 3]),
        neck=dict(type='MultiLevelNeck', in_channels=[32] * 4, out_channels=16,
                  scales=[4, 2, 1, 0.5]),
        decode_head=dict(type='UPerHead', in_channels=[16] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2), channels=16, num_classes=5,
                         norm_cfg=dict(type='BN'), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss')),
        test_cfg=dict(mode='whole'))))
    model = jitter(deployable_model(cfg).model)
    x = rand(2, 3, 64, 96)
    assert count_shared_destinations(model.backbone, x, monkeypatch) > 0
    module = TensorForward(model)
    assert module.task == 'segmentation'
    with torch.no_grad():
        assert module(x)[0].shape == (2, 5, 64, 96)
    assert_exports_equal(module, x)


def test_faseg_segmentor_exports_equal():
    """The tiny FASeg head (deformable-attention pixel decoder, masked decoder) over a
    ToMe ViT, through encode_decode."""
    tiny = _load(osp.join(TESTS, 'test_faseg', 'faseg_tiny.py'), 'onnx_faseg_tiny')
    head = tiny.tiny_head_cfg(in_channels=[16] * 4).to_dict()
    head['transformer_decoder']['num_layers'] = 2
    cfg = Config(dict(default_scope='mmseg', model=dict(
        type='EncoderDecoder',
        backbone=dict(type='PYRAViT', arch=TINY, img_size=(64, 64), patch_size=8,
                      out_type='featmap', out_indices=(0, 1, 2, 3), final_norm=False,
                      merge_mode='tome', merge_schedule=[16, 8, 4, 2]),
        neck=dict(type='MultiLevelNeck', in_channels=[32] * 4, out_channels=16,
                  scales=[2, 1, 0.5, 0.25]),
        decode_head=head, test_cfg=dict(mode='whole'))))
    model = deployable_model(cfg).model
    jitter(model.backbone)
    assert_exports_equal(TensorForward(model), rand(1, 3, 64, 64))


def test_tied_similarities_pick_the_same_tokens():
    """Identical tokens tie; ONNX TopK orders ties by index, and so does eager now
    (PyTorch's default sort ordered 33+ tied values otherwise)."""
    class Matching(torch.nn.Module):
        def forward(self, metric):
            m = bipartite_soft_matching(metric, 20, class_token=True)
            return m.src_idx, m.dst_idx, m.unm_idx, m.assignment()

    metric = rand(2, 97, 16)
    metric[:, 10:80] = metric[:, 5:6]
    data, _ = export_onnx(Matching(), metric)
    got = ort_session(data).run(None, {'input': metric.numpy()})
    for want, out in zip(Matching()(metric), got):
        np.testing.assert_array_equal(out, want.numpy())


def test_merging_at_another_size_is_refused_or_equal():
    """At a size other than the build size the merger rescales its schedule from the
    token count, which a trace gives as a tensor: either the graph equals PyTorch or
    the export is refused with the reason (never a silently wrong graph)."""
    model = vit(img_size=(48, 48), out_type='featmap', merge_mode='tome',
                merge_schedule=[8, 4, 2, 1])
    x = rand(2, 3, 40, 56)
    try:
        assert_exports_equal(model, x)
    except ExportRefused as err:
        assert 'build size (48, 48)' in str(err) and '--shape 48 48' in str(err)


# ------------------------------------------------------------ SPViT, ESTA
def test_spvit_compact_mixed_ops():
    spvit = _load(osp.join(TESTS, 'test_spvit', 'common.py'), 'onnx_spvit_common')
    from projects.spvit import SPViTArch
    arch = SPViTArch(ops=['conv3x3', 'msa', 'conv1x1', 'skip'],
                     ffn=[list(range(k)) for k in (64, 7, 20, 50)], embed_dims=32,
                     num_heads=4, mlp_hidden=64)
    model = jitter(spvit.compact(arch, folded=True))  # the deployment form
    assert_exports_equal(model, rand(2, 3, *spvit.IMG))


def test_deployed_esta_stitch(tmp_path):
    """A stitch exported by projects/esta/deploy.py (LoRA and stitch biases folded),
    loaded as the tool loads a config + checkpoint, equals the supernet's path."""
    from projects.core.engine.model_builder import build_model_from_cfg
    from projects.esta.deploy import export_stitches
    cfg = Config.fromfile(osp.join(TESTS, 'test_esta', 'configs', 'esta_tiny_28px.py'))
    supernet = build_model_from_cfg(cfg)
    supernet.init_weights()
    jitter(supernet, scale=0.05)
    stitch = supernet.backbone.num_stitches - 3  # a stitch, not an anchor alone
    [path] = export_stitches(cfg, None, [stitch], str(tmp_path), model=supernet)
    deploy = deployable_model(Config.fromfile(path), path[:-3] + '.pth', fold=False)

    class Supernet(torch.nn.Module):
        def forward(self, t):
            return (supernet.head(supernet.backbone(t, stitch=stitch)),)

    assert_exports_equal(TensorForward(deploy.model), rand(2, 3, 28, 28),
                         also=[Supernet().eval()])


# ------------------------------------------------------------------------ DyT
DYT_VARIANTS = {
    'mlp': dict(mlp_gate=dict(type='DyTDispatcher')),
    'attn': dict(attn_gate=dict(type='DyTDispatcher', skips='attn')),
    'attn_mlp': dict(attn_gate=dict(type='DyTDispatcher', skips='attn_mlp')),
    'layer': dict(attn_gate=dict(type='DyTLayerDispatcher')),
}


def _dyt(variant: str, **kw) -> PYRAViT:
    model = vit(arch=dict(TINY, num_layers=3), img_size=(32, 48), out_type='featmap', **kw,
                block_cfg=dict(DYT_VARIANTS[variant],
                               adapter=dict(type='DyTAdapter', bottleneck=4)))
    logits = {}
    gates = [b.attn_gate if b.attn_gate is not None else b.mlp_gate for b in model.blocks]
    hooks = [g.score.register_forward_hook(
        lambda mod, inp, out, i=i: logits.__setitem__(i, out)) for i, g in enumerate(gates)]
    with torch.no_grad():  # each layer's bias at its median logit: decisions that differ
        for i, gate in enumerate(gates):  # (on other images than the checked ones: a
            model(rand(4, 3, 32, 48, seed=99))  # logit at exactly 0 may go either way)
            gate.score.bias -= logits[i].median()
        if variant == 'layer':  # the first layer decides on the class token alone: keep it
            gates[0].score.bias.fill_(10)
    for hook in hooks:
        hook.remove()
    return model


@pytest.mark.parametrize('variant', list(DYT_VARIANTS))
def test_dyt_packed_exports_equal_or_is_refused(variant):
    """MLP dispatch exports its packed eval (NonZero rows) and equals PyTorch; the
    attention and layer variants are refused with the reason, and their dense-masked
    form (--dense-gates) equals the packed PyTorch model."""
    model = _dyt(variant)
    x = rand(4, 3, 32, 48)
    with torch.no_grad():
        _, ctx = model.forward_with_context(x)
    rates = [m.float().mean().item() for m in ctx.masks.values()]
    assert sum(0 < r < 1 for r in rates) >= 2, rates  # hard decisions that really differ
    reason = refusal_reason(model)
    if variant == 'mlp':
        assert reason is None
        assert_exports_equal(model, x, more=2)
        return
    assert reason and 'Export refused' in reason and '--dense-gates' in reason
    with pytest.raises(ExportRefused, match='trace freezes'):
        export_and_check(model, x)
    dense = copy.deepcopy(model)
    assert use_dense_gates(dense)
    assert refusal_reason(dense) is None
    assert_exports_equal(dense, x, reference=model, more=2)


# ------------------------------------------------------------------------ CLI
def _write_cfg(tmp_path, name: str, backbone: dict, **model) -> str:
    """The tiny classification config of the tool tests with other backbone options."""
    cls_cfg = osp.join(TESTS, 'data', 'configs',
                       'pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py')
    path = tmp_path / name
    model = dict(model, backbone=backbone)
    path.write_text(f'_base_ = [{cls_cfg!r}]\nmodel = {model!r}\n')
    return str(path)


def test_cli_exports_checks_and_refuses(tmp_path, tools, capsys):
    """Success, as a user runs it: ToMe + LoRA (folded), featmap unmerged, checked on
    real images too (rc 0, file written). Refusal, through ``main`` meanwhile: DyT
    attention dispatch (rc 3, nothing written)."""
    merged = _write_cfg(tmp_path, 'tome_lora.py', dict(
        out_type='featmap', merge_mode='tome', merge_schedule=[12, 6],
        lora_cfg=dict(rank=4, alpha=4)), neck=dict(type='GlobalAveragePooling', _delete_=True))
    dyt = _write_cfg(tmp_path, 'dyt_attn.py', dict(
        block_cfg=dict(attn_gate=dict(type='DyTDispatcher', skips='attn'))))
    img = osp.join(REPO, 'data', 'vtab-1k', 'fashion_mnist', 'images', 'test', '00000.png')
    tool = osp.join(REPO, 'tools', 'deployment', 'pytorch2onnx.py')
    ok_out, bad_out = tmp_path / 'merged.onnx', tmp_path / 'dyt.onnx'
    proc = tools.start(tools.python_tool(tool) + [
        merged, '--out', ok_out, '--img', img, img], str(tmp_path))
    cli = _load(tool, 'onnx_pytorch2onnx_cli')
    assert cli.main([dyt, '--out', str(bad_out)]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert 'attention gate' in err and 'Export refused' in err and '--dense-gates' in err
    assert not bad_out.exists()
    ok = tools.finish(proc)
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert 'LoRA / SPT-LoRA folded' in ok.stdout and 'onnxruntime equals PyTorch' in ok.stdout
    assert '--img (2 images)' in ok.stdout
    # the written graph is the checked one, and says what its input must be
    session = ort_session(str(ok_out))
    meta = session.get_modelmeta().custom_metadata_map
    pre = deployable_model(Config.fromfile(merged)).model.data_preprocessor
    assert meta['bgr_to_rgb'] == str(pre.to_rgb) and 'preprocessed batch' in meta['input']


def test_dyt_mlp_gate_that_keeps_no_traced_token_is_refused():
    """Without a class token an MLP gate may keep no token of the traced input; the
    trace would then skip that MLP for every input."""
    model = _dyt('mlp', with_cls_token=False)
    with torch.no_grad():
        model.blocks[1].mlp_gate.score.bias.fill_(-1e3)
    with pytest.raises(ExportRefused, match='activates no token in the gated MLP of blocks.1'):
        export_and_check(model, rand(2, 3, 32, 48))
