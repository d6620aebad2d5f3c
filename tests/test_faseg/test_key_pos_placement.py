"""Where FASeg's conditional positional encodings (PEG) are computed.

``key_pos_placement='encoder'`` (official code): PEG of the 1x1-projected backbone
features, the deformable encoder's positional encoding and the decoder's key positions.
``'output'``: PEG of the pixel-decoder outputs, mmdet's sine encoding in the encoder.
Each placement is checked against a reference built step by step from the submodules
(projections, depthwise convs as ``F.conv2d``, mmdet's encoder with mmdet's own
reference points, FPN convs) and run through mmseg's own ``Mask2FormerHead`` decoder
loop, into which the hand-built memories and key positions are fed.
"""
import copy
import os.path as osp
import sys
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn.functional as F
from mmdet.models.layers import MSDeformAttnPixelDecoder, SinePositionalEncoding
from mmengine.registry import DefaultScope
from torch import Tensor, nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from faseg_tiny import C, build_head, tiny_head_cfg, tiny_inputs  # noqa: E402

from projects.faseg import EncoderPEGPixelDecoder  # noqa: E402
from projects.faseg.hrca import gather_tokens  # noqa: E402


def _peg(conv: nn.Conv2d, feat: Tensor) -> Tensor:
    """Depthwise 3x3 conv by hand, flattened to (B, HW, C)."""
    out = F.conv2d(feat, conv.weight, conv.bias, padding=1, groups=feat.shape[1])
    return out.flatten(2).transpose(1, 2)


def _build(**kw):
    """A tiny head whose deformable encoder depends on its queries: mmcv initialises the
    sampling-offset and attention-weight projections to zero weights, which would make
    the encoder's positional encoding (the point of these tests) have no effect."""
    torch.manual_seed(0)
    head = build_head(key_pos_type='conditional', **kw).eval()
    with torch.no_grad():
        for name, param in head.pixel_decoder.encoder.named_parameters():
            if name.endswith(('sampling_offsets.weight', 'attention_weights.weight')):
                param.normal_(0, 0.05)
    return head


def _grid(tokens: Tensor, hw: Tuple[int, int]) -> Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *hw)


def _mmdet_reference_points(pd, sizes: List[Tuple[int, int]], batch: int) -> Tensor:
    """Reference points as mmdet's own pixel decoder computes them."""
    points = []
    for i, (h, w) in enumerate(sizes):
        level = pd.num_input_levels - 1 - i
        p = pd.point_generator.single_level_grid_priors((h, w), level, device='cpu')
        points.append(p / p.new_tensor([w, h]) / pd.strides[level])
    return torch.cat(points)[None, :, None].repeat(batch, 1, len(sizes), 1)


def _hand_encoder_pixel_decoder(pd, feats: List[Tensor]):
    """Official placement, step by step: memories (low to high resolution) and the
    PEG key positions of every output level."""
    projected = [pd.input_convs[i](feats[3 - i]) for i in range(3)]
    pos = [_peg(pd.pos_encoder.convs[i], p) for i, p in enumerate(projected)]
    sizes = [tuple(p.shape[-2:]) for p in projected]
    counts = [h * w for h, w in sizes]
    shapes = torch.tensor(sizes)
    memory = pd.encoder(
        query=torch.cat([p.flatten(2).transpose(1, 2) for p in projected], 1),
        query_pos=torch.cat([q + pd.level_encoding.weight[i] for i, q in enumerate(pos)], 1),
        key_padding_mask=torch.zeros(feats[0].shape[0], sum(counts), dtype=torch.bool),
        spatial_shapes=shapes,
        reference_points=_mmdet_reference_points(pd, sizes, feats[0].shape[0]),
        level_start_index=torch.tensor([0, counts[0], counts[0] + counts[1]]),
        valid_ratios=torch.ones(feats[0].shape[0], 3, 2))
    outs = [_grid(m, hw) for m, hw in zip(memory.split(counts, 1), sizes)]
    lateral = pd.lateral_convs[0](feats[0])
    outs.append(pd.output_convs[0](lateral + F.interpolate(
        outs[-1], size=lateral.shape[-2:], mode='bilinear', align_corners=False)))
    if pd.num_outs == 4:
        pos.append(_peg(pd.pos_encoder.convs[3], pd.extra_pos_projs[0](feats[0])))
    return pd.mask_feature(outs[-1]), outs[:pd.num_outs], pos


def _mask2former_with(head, mask_feature: Tensor, memories: List[Tensor],
                      key_pos: List[Tensor], feats: List[Tensor]):
    """mmseg's Mask2FormerHead with the FASeg head's weights, fed the given pixel-decoder
    outputs and key positions (looked up by level size): its own decoder loop."""
    from mmseg.registry import MODELS
    cfg = tiny_head_cfg(type='Mask2FormerHead')
    for key in ('with_dfpq', 'with_hrca', 'key_pos_type', 'key_pos_placement'):
        cfg.pop(key, None)
    with DefaultScope.overwrite_default_scope('mmseg'):
        m2f = MODELS.build(cfg)
    missing, unexpected = m2f.load_state_dict(head.state_dict(), strict=False)
    assert not missing, missing
    assert all(k.startswith(('pixel_decoder.pos_encoder.', 'pixel_decoder.extra_pos_projs.',
                             'key_pos_encoder.')) for k in unexpected), unexpected
    by_size: Dict[Tuple[int, int], Tensor] = {
        tuple(m.shape[-2:]): _grid(p, m.shape[-2:]) for m, p in zip(memories, key_pos)}
    m2f.pixel_decoder.forward = lambda _x: (mask_feature, memories)
    m2f.decoder_positional_encoding.forward = lambda mask: by_size[tuple(mask.shape[-2:])]
    return m2f.eval()(feats, None)


def _equal_lists(a: List[Tensor], b: List[Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_encoder_placement_equals_hand_built_reference():
    head = _build(key_pos_placement='encoder')
    assert isinstance(head.pixel_decoder, EncoderPEGPixelDecoder)
    feats, _ = tiny_inputs(batch=2)
    mask_feature, memories, pos = _hand_encoder_pixel_decoder(head.pixel_decoder, feats)
    cls_ref, mask_ref = _mask2former_with(head, mask_feature, memories, pos, feats)
    cls_out, mask_out = head(feats, None)
    _equal_lists(cls_out, cls_ref)
    _equal_lists(mask_out, mask_ref)


@torch.no_grad()
def test_output_placement_equals_hand_built_reference():
    head = _build(key_pos_placement='output')
    assert type(head.pixel_decoder) is MSDeformAttnPixelDecoder  # mmdet's, unchanged
    feats, _ = tiny_inputs(batch=2)
    mask_feature, memories = head.pixel_decoder(feats)
    pos = [_peg(head.key_pos_encoder.convs[i], m) for i, m in enumerate(memories)]
    cls_ref, mask_ref = _mask2former_with(head, mask_feature, memories, pos, feats)
    cls_out, mask_out = head(feats, None)
    _equal_lists(cls_out, cls_ref)
    _equal_lists(mask_out, mask_ref)


@torch.no_grad()
def test_the_two_placements_differ_with_the_same_weights():
    """Same weights everywhere (the depthwise convs copied across): only where the PEG
    is applied differs, and so do the encoder memories and the predictions."""
    out_head = _build(key_pos_placement='output')
    enc_head = _build(key_pos_placement='encoder')
    state = {k.replace('key_pos_encoder.', 'pixel_decoder.pos_encoder.'): v
             for k, v in out_head.state_dict().items()}
    missing, unexpected = enc_head.load_state_dict(state, strict=False)
    assert not unexpected and missing == []  # no HRCA level: no extra projection
    feats, _ = tiny_inputs(batch=2)
    mem_out = out_head.pixel_decoder(feats)[1]
    mem_enc = enc_head.pixel_decoder(feats)[1]
    for a, b in zip(mem_out, mem_enc):
        assert (a - b).abs().max() > 1e-2
    _, masks_out = out_head(feats, None)
    _, masks_enc = enc_head(feats, None)
    assert (masks_out[-1] - masks_enc[-1]).abs().max() > 1e-2


class _SinePEG(nn.Module):
    """mmdet's sine encoding behind the PEG interface (level ignored)."""

    def __init__(self, sine: SinePositionalEncoding) -> None:
        super().__init__()
        self.sine = sine

    def forward(self, feat: Tensor, level: int) -> Tensor:
        mask = feat.new_zeros((feat.shape[0], ) + feat.shape[-2:], dtype=torch.bool)
        return self.sine(mask).flatten(2).transpose(1, 2)


@torch.no_grad()
@pytest.mark.parametrize('num_outs', [3, 4])
def test_encoder_pixel_decoder_runs_mmdet_encoder_and_fpn_exactly(num_outs):
    """With the PEG swapped for mmdet's sine encoding, the pixel decoder computes exactly
    what mmdet's MSDeformAttnPixelDecoder computes (same weights): only the encoding
    differs between the two classes."""
    from mmdet.registry import MODELS
    cfg = copy.deepcopy(tiny_head_cfg().pixel_decoder)
    cfg.update(in_channels=[8, 16, 24, 32], strides=[4, 8, 16, 32], feat_channels=C,
               out_channels=C, num_outs=num_outs)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MODELS.build(cfg)
    ref.init_weights()
    for name, param in ref.encoder.named_parameters():  # queries matter (see _build)
        if name.endswith(('sampling_offsets.weight', 'attention_weights.weight')):
            param.normal_(0, 0.05)
    ours = EncoderPEGPixelDecoder(**{k: v for k, v in cfg.items() if k != 'type'})
    missing, _ = ours.load_state_dict(ref.state_dict(), strict=False)
    assert all(k.startswith(('pos_encoder.', 'extra_pos_projs.')) for k in missing)
    ours.pos_encoder = _SinePEG(ref.postional_encoding)
    feats, _ = tiny_inputs(batch=2)
    mask_ref, outs_ref = ref.eval()(feats)
    mask_ours, outs_ours, pos = ours.eval()(feats)
    torch.testing.assert_close(mask_ours, mask_ref, atol=1e-5, rtol=1e-5)
    _equal_lists(outs_ours, outs_ref)
    assert [p.shape[1] for p in pos] == [o.shape[-2] * o.shape[-1] for o in outs_ref]


@torch.no_grad()
def test_hrca_level_position_is_the_peg_of_its_own_backbone_projection():
    """With HRCA, the 1/4 keys' positions are the PEG of a separate 1x1 projection of
    the 1/4 backbone feature (not of the FPN output the keys come from), gathered at the
    selected windows."""
    decoder = copy.deepcopy(tiny_head_cfg().transformer_decoder)
    decoder.update(num_layers=4)
    head = _build(key_pos_placement='encoder', with_dfpq=True, with_hrca=True,
                  transformer_decoder=decoder)
    head.record_attention = True
    feats, _ = tiny_inputs(batch=2)
    seen = {}
    hr_layer = head.transformer_decoder.layers[head.layer_levels.index(-1)]
    hr_layer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(key_pos=kwargs['key_pos']), with_kwargs=True)
    head(feats, None)
    _, (_, index) = next(item for item in head.attn_maps if item[0] == -1)
    pd = head.pixel_decoder
    hand = _peg(pd.pos_encoder.convs[3], pd.extra_pos_projs[0](feats[0]))
    torch.testing.assert_close(seen['key_pos'], gather_tokens(hand, index))
    fpn_peg = _peg(pd.pos_encoder.convs[3], _hand_encoder_pixel_decoder(pd, feats)[1][3])
    assert (seen['key_pos'] - gather_tokens(fpn_peg, index)).abs().max() > 1e-2
