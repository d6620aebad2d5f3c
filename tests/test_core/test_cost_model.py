"""The one cost model (projects/vit/cost.py) against torch's FlopCounterMode, an
independent count of every matmul / convolution that really ran.

The reference is ``cost.reference_macs``: FlopCounterMode (FLOPs / 2) with attention
made visible (on this CPU build it records nothing for ``scaled_dot_product_attention``;
inside ``explicit_attention`` it is two matmuls) and mmcv's deformable-attention
sampling added (``grid_sample``, which the counter does not see).

Tolerance: none is needed for what both count. Neither counts norms, softmax,
activations or additions, so the counts are equal (up to float rounding) wherever our
parts count exactly what ran. The known differences, stated per test: DyT's token
dispatcher counts the class token it does not score (D per layer), DyT's MoE adapter
leaves out the mixing of its biases (E (d + D) per layer), and per-forward weight
construction (SPViT's unfolded kernels) is no per-image work (folded rule).
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.utils.flop_counter import FlopCounterMode

from mmpretrain.registry import MODELS

from projects.core.engine.model_builder import build_model_from_cfg
from projects.dyt.calibrate import calibrate_rate
from projects.esta import StitchedViT
from projects.esta.layers import Stitch
from projects.pyra import PYRAViT
from projects.spvit import SPViTArch, arch_macs, fold_state_dict
from projects.spvit.arch import compact_overrides
from projects.spvit.flops import hard_arch_macs
from projects.vit import ComposableViT, MlpPart, VIT_LAYERS
from projects.vit import cost
from projects.vit.cost import MacsRecord, executed_macs, model_macs, reference_macs

TINY = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)
ROOT = __file__.rsplit('/tests/', 1)[0]
pytestmark = pytest.mark.usefixtures('one_thread')  # tiny models: fastest so


def _close(ours: float, ref: float, slack: float = 0.0) -> None:
    assert abs(ours - ref) <= slack + 1e-9 * ref, (ours, ref, slack)


def _perturb(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


# ------------------------------------------------------------- dense and merged
def test_reference_needs_explicit_attention_on_this_build():
    q = torch.randn(1, 2, 5, 8)
    with FlopCounterMode(display=False) as fused:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert fused.get_total_flops() == 0   # why the reference swaps in matmuls
    assert reference_macs(lambda t: torch.nn.functional.scaled_dot_product_attention(
        t, t, t), q) == cost.attention(5, 5, 2 * 8)


def test_dense_vit_counts_equal_flop_counter():
    model = ComposableViT(arch=TINY, img_size=(32, 48), patch_size=8).eval()
    x = torch.randn(2, 3, 32, 48)
    ref = reference_macs(model, x)
    _close(executed_macs(model, x), ref)
    _close(model_macs(model, (32, 48)), ref)
    # recording happens only when asked: a plain forward carries no record
    assert model.forward_with_context(x)[1].get(MacsRecord) is None


@pytest.mark.parametrize('mode', ['tome', 'pyra', 'drop'])
@pytest.mark.parametrize('hw', [(56, 56), (40, 64)])
def test_merged_vit_counts_equal_flop_counter(mode, hw):
    """Matching, PYRA's modulation and the merged token counts -- also at an input
    size other than the build size, where each layer merges its share."""
    model = _perturb(PYRAViT(arch=TINY, img_size=56, patch_size=8, merge_mode=mode,
                             merge_schedule=[10, 6, 4],
                             out_type='avg_featmap' if mode == 'drop' else 'featmap')).eval()
    x = torch.randn(2, 3, *hw)
    ref = reference_macs(model, x)
    _close(executed_macs(model, x), ref)
    _close(model_macs(model, hw), ref)
    if mode != 'drop':
        plain = PYRAViT(arch=TINY, img_size=56, patch_size=8, merge_mode='drop',
                        merge_schedule=[10, 6, 4], out_type='avg_featmap')
        assert model_macs(model, hw) > model_macs(plain, hw)  # matching is counted


# --------------------------------------------------------------------- DyT
DYT = ['vtab1k/dyt-mlp-r0.5', 'vtab1k/dyt-mlp-moe-r0.5', 'variants/dyt-attn-r0.5',
       'variants/dyt-attn-mlp-r0.5', 'variants/dyt-layer-r0.5']


@pytest.mark.parametrize('name', DYT)
def test_dyt_variants_packed_eval_count_what_ran(name):
    cfg = Config.fromfile(f'{ROOT}/configs/dyt/{name}_vit-b16_1xb64-100e_vtab1k-cifar-224px.py')
    backbone = dict(cfg.model.backbone, arch=TINY, img_size=32, patch_size=8)
    backbone.pop('init_cfg')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = _perturb(MODELS.build(backbone)).eval()
    x = torch.randn(6, 3, 32, 32)
    calibrate_rate(model, x, 0.4)
    ref = reference_macs(model, x)
    with cost.explicit_attention():  # the same arithmetic, so the same decisions (the
        ours = executed_macs(model, x)  # calibrated threshold sits on a score)
    d, layers = TINY['embed_dims'], TINY['num_layers']
    adapter = model.blocks[0].adapter
    experts = getattr(adapter, 'down_weight', torch.zeros(1, 0, 0)).shape
    # DyT's own counts: the token dispatcher's class token (+D), the MoE's bias mixing
    # (-E (d + D)); the layer dispatcher scores the class token only, exactly
    slack = layers * (d + experts[0] * (experts[1] + d))
    _close(ours, ref, slack)
    assert ours < model_macs(model, (32, 32))  # the skipped tokens are not counted


# ------------------------------------------------------------------- SPViT
SPVIT = [(['conv3x3', 'skip', 'conv1x1', 'msa'], [64, 5, 0, 31]),
         (['msa', 'conv1x1', 'conv3x3', 'skip'], [12, 64, 40, 7])]


def _compact(ops, keep, folded):
    arch = SPViTArch(ops=ops, ffn=list(keep), embed_dims=32, num_heads=4, mlp_hidden=64)
    spec = dict(TINY, num_layers=4, num_heads=4)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PYRAViT(arch=spec, img_size=(24, 40), patch_size=8, prop_attn=False,
                        block_overrides=compact_overrides(arch, folded=folded))
    return arch, model.eval()


@pytest.mark.parametrize('ops,keep', SPVIT)
def test_spvit_compact_mixed_ops_equal_flop_counter_and_arch_macs(ops, keep):
    """Skip, 1x1, 3x3 and MSA layers with uneven FFN widths: each part counts its own
    op and width (the old count took MSA and block 0's FFN width for every layer)."""
    arch, unfolded = _compact(ops, keep, folded=False)
    _perturb(unfolded)
    _, folded = _compact(ops, keep, folded=True)
    folded.load_state_dict(fold_state_dict(arch, unfolded.state_dict(), 4))
    x = torch.randn(2, 3, 24, 40)
    ours = executed_macs(folded, x)
    _close(ours, reference_macs(folded, x))
    assert ours == executed_macs(unfolded, x) == model_macs(unfolded, (24, 40)) == \
        arch_macs(arch, 32, 4, (3, 5), 8)
    _excess_is_per_forward(unfolded, ours, (24, 40))


def _excess_is_per_forward(model, ours: float, hw) -> None:
    """Where the reference counts more, it is per-forward work (conv kernels mixed
    once per forward): per image it shrinks with the batch, so it is no per-image
    cost."""
    excess = [reference_macs(model, torch.randn(b, 3, *hw)) - ours for b in (1, 4)]
    assert excess[0] > 0 and excess[1] == pytest.approx(excess[0] / 4)


def test_spvit_supernet_counts_the_op_eval_runs():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PYRAViT(arch=dict(TINY, num_heads=4), img_size=32, patch_size=8,
                        prop_attn=False, block_cfg=dict(
                            attn_cfg=dict(type='SPViTAttention'),
                            mlp_cfg=dict(type='SPViTGatedMlp')))
    with torch.no_grad():
        for blk, logits in zip(model.blocks, ([3, -3, 3], [3, 3, -3], [-3, 3, 3])):
            blk.attn.theta.copy_(torch.tensor(logits, dtype=torch.float))
            blk.mlp.theta.normal_()  # about half the FFN units off
    model.eval()
    ours = executed_macs(model, torch.randn(2, 3, 32, 32))
    # the op of each layer, FFNs in full (eval multiplies the gated units by 0)
    assert ours == model_macs(model, (32, 32)) > hard_arch_macs(model)
    _excess_is_per_forward(model, ours, (32, 32))


# -------------------------------------------------------------------- ESTA
def _anchor(dim, heads, **kw):
    return dict(arch=dict(embed_dims=dim, num_layers=3, num_heads=heads,
                          feedforward_channels=2 * dim),
                img_size=28, patch_size=14, **kw)


@pytest.mark.parametrize('out_type', ['cls_token', 'featmap'])
def test_esta_every_stitch_equals_flop_counter(out_type):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        plain = StitchedViT([_anchor(16, 2), _anchor(32, 4)], pst=False, frozen=False,
                            out_type=out_type, out_indices=(1, 2)).eval()
        pst = StitchedViT([_anchor(16, 2, lora_cfg=dict(rank=2, alpha=2)),
                           _anchor(32, 4, lora_cfg=dict(rank=2, alpha=2))],
                          out_type=out_type, out_indices=(1, 2)).eval()
    x = torch.randn(2, 3, 28, 28)
    for s in range(plain.num_stitches):
        ref = reference_macs(lambda t, s=s: plain(t, stitch=s), x)
        ours = executed_macs(plain, x, inputs=(Stitch(s),))
        _close(ours, ref)
        assert ours == plain.stitch_macs(s) == model_macs(plain, (28, 28), (Stitch(s),))
        # PST's LoRA and stitch biases fold into the same network: the same count
        assert executed_macs(pst, x, inputs=(Stitch(s),)) == ours
    plain.set_stitch(3)
    assert executed_macs(plain, x) == plain.stitch_macs(3)


# -------------------------------------------------------------- end to end
def _seg(base: str, **model):
    cfg = Config.fromfile(f'{ROOT}/configs/_base_/models/{base}.py')
    cfg.merge_from_dict(dict(model=model, default_scope='mmseg'))
    cfg.model.backbone.pop('init_cfg', None)
    cfg.model.pop('auxiliary_head', None)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return _perturb(build_model_from_cfg(cfg)).eval()


def _end_to_end(model, x):
    """(ours, reference): our backbone count plus the counter's count of neck and head
    on the backbone's outputs, against the counter's count of the whole segmentor."""
    metas = [dict(img_shape=x.shape[-2:], ori_shape=x.shape[-2:],
                  pad_shape=x.shape[-2:])] * x.shape[0]
    with torch.no_grad():
        feats = model.backbone(x)

    def rest(_x):
        return model.decode_head.predict(model.neck(feats) if model.with_neck else feats,
                                         metas, model.test_cfg)
    ours = executed_macs(model.backbone, x) + reference_macs(rest, x, modules=model)
    return ours, reference_macs(lambda t: model.encode_decode(t, metas), x, modules=model)


def _backbone(**kw) -> dict:
    """A tiny PYRA ViT for the segmentors (a fresh dict: merging consumes _delete_)."""
    return dict(dict(arch=dict(TINY, num_layers=4, _delete_=True), img_size=64, patch_size=8,
                     merge_mode='pyra', merge_schedule=[8, 6, 4], lora_cfg=None,
                     frozen=False), **kw)


def test_upernet_end_to_end():
    model = _seg('upernet_pyra-vit-b16', backbone=_backbone(out_indices=(0, 1, 2, 3)),
                 neck=dict(in_channels=[32] * 4, out_channels=16),
                 decode_head=dict(in_channels=[16] * 4, channels=16, num_classes=5,
                                  norm_cfg=dict(type='BN')))
    _close(*_end_to_end(model, torch.randn(2, 3, 64, 64)))


def test_segmenter_end_to_end_and_what_the_counter_misses():
    model = _seg('segmenter_pyra-vit-b16', backbone=_backbone(out_indices=(3,)),
                 decode_head=dict(in_channels=32, channels=32, embed_dims=32, num_heads=2,
                                  num_classes=5))
    x = torch.randn(2, 3, 64, 64)
    _close(*_end_to_end(model, x))
    feats = model.backbone(x)

    def fused_macs(fn) -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn(x)
        return counter.get_total_flops() / 2 / x.shape[0]
    # the head's attention (mmcv's MultiheadAttention, weights by bmm) is seen as is
    head = lambda _t: model.decode_head(feats)  # noqa: E731
    assert fused_macs(head) == reference_macs(head, x)
    # the backbone's (fused SDPA) is not: QK^T + AV on the tokens left by merging
    missed = sum(cost.attention(n, n, 32) for n in (65, 57, 51, 47))
    assert fused_macs(model.backbone) + missed == executed_macs(model.backbone, x)


def test_faseg_end_to_end_counts_deformable_sampling():
    import sys
    sys.path.insert(0, f'{ROOT}/tests/test_faseg')
    from faseg_tiny import tiny_head_cfg
    head = tiny_head_cfg(in_channels=[32] * 4)
    model = _seg('faseg_r50', backbone=_backbone(
        _delete_=True, type='PYRAViT', img_size=128, patch_size=16,
        out_type='featmap', out_indices=(0, 1, 2, 3), final_norm=False),
        neck=dict(type='MultiLevelNeck', in_channels=[32] * 4, out_channels=32,
                  scales=[4, 2, 1, 0.5]),
        decode_head=dict(head, _delete_=True), test_cfg=dict(mode='whole'))
    x = torch.randn(1, 3, 128, 128)
    ours, ref = _end_to_end(model, x)
    _close(ours, ref)
    # what the counter cannot see: the deformable encoder's sampling (grid_sample) on
    # the three coarsest levels (1/8, 1/16, 1/32 of 128 px), 1 layer, 2 points
    feats = model.extract_feat(x)
    metas = [dict(img_shape=(128, 128))]
    counted = [reference_macs(lambda _t: model.decode_head.predict(feats, metas,
                                                                    model.test_cfg),
                              x, modules=m) for m in (model, None)]
    queries = 16 * 16 + 8 * 8 + 4 * 4
    assert counted[0] - counted[1] == cost.deformable_attention(queries, 32, 3, 2)


# ---------------------------------------------------------------- bad input
def test_a_part_without_a_count_is_named():
    @VIT_LAYERS.register_module(force=True)
    class _UncountedMlp(MlpPart):
        def __init__(self, dim, hidden, **kwargs):
            super().__init__()
            self.fc = torch.nn.Linear(dim, dim)

        def forward(self, x):
            return self.fc(x)
    try:
        model = ComposableViT(arch=TINY, img_size=32, patch_size=8,
                              block_cfg=dict(mlp_cfg=dict(type='_UncountedMlp')))
    finally:
        VIT_LAYERS.module_dict.pop('_UncountedMlp')
    with pytest.raises(NotImplementedError, match='_UncountedMlp does not count its'):
        model_macs(model, (32, 32))
    with pytest.raises(TypeError, match='Linear is not a ViT of MMAdapt'):
        executed_macs(torch.nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match='not divisible by patch_size 8'):
        model_macs(ComposableViT(arch=TINY, img_size=32, patch_size=8), (30, 32))
