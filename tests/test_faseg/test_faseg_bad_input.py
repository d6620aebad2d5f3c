"""Bad FASegHead settings are refused when the head is built, naming the setting, the
value and what is allowed (test_dfpq.py / test_hrca.py check the lower-level parts)."""
import copy
import os.path as osp
import re
import sys

import pytest

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from faseg_tiny import build_head, tiny_head_cfg  # noqa: E402


def _decoder(num_layers: int) -> dict:
    cfg = copy.deepcopy(tiny_head_cfg().transformer_decoder)
    cfg.update(num_layers=num_layers)
    return cfg


@pytest.mark.parametrize('kw, match', [
    (dict(with_dfpq=True, dfpq_init_pool='center'),
     r"init_pool must be one of \('background', 'foreground', 'soft'\), got 'center'"),
    (dict(key_pos_type='learned'), r"key_pos_type must be sine or conditional, got 'learned'"),
    (dict(key_pos_type='conditional', key_pos_placement='decoder'),
     r"key_pos_placement must be one of \('output', 'encoder'\), got 'decoder'"),
], ids=['dfpq-pool', 'key-pos', 'key-pos-placement'])
def test_unknown_option_names_the_allowed_values(kw, match):
    with pytest.raises(ValueError, match=match):
        build_head(**kw)


def test_encoder_placement_without_conditional_encodings_is_refused():
    """'encoder' places the PEG in the deformable encoder: with sine encodings there is
    nothing to place, and silently ignoring the flag would hide a config mistake."""
    with pytest.raises(ValueError, match=r"key_pos_placement='encoder' places the "
                       r"conditional \(PEG\) encodings .* key_pos_type='sine'\. Set "
                       r"key_pos_type='conditional', or key_pos_placement='output'"):
        build_head(key_pos_type='sine', key_pos_placement='encoder')


def test_encoder_placement_with_another_pixel_decoder_is_refused():
    """The placement swaps in a subclass of mmdet's deformable pixel decoder; another
    pixel decoder would be replaced without a word."""
    pixel_decoder = copy.deepcopy(tiny_head_cfg().pixel_decoder)
    pixel_decoder.update(type='mmdet.PixelDecoder')
    with pytest.raises(ValueError, match=r"replaces mmdet's MSDeformAttnPixelDecoder by "
                       r"EncoderPEGPixelDecoder, but pixel_decoder.type is "
                       r"'mmdet.PixelDecoder'\. Use type='mmdet.MSDeformAttnPixelDecoder'"):
        build_head(key_pos_type='conditional', key_pos_placement='encoder',
                   pixel_decoder=pixel_decoder)


def test_unknown_hrca_selection_is_refused_at_build():
    """Before: accepted, and only the first forward failed inside the HRCA layer."""
    with pytest.raises(ValueError, match=r"hrca_selection must be one of \('window', "
                       r"'bilinear'\), got 'nearest'"):
        build_head(with_hrca=True, hrca_selection='nearest', transformer_decoder=_decoder(5))


@pytest.mark.parametrize('ids', [[5], [-6], [3, 9]])
def test_hrca_layer_outside_the_decoder_is_refused(ids):
    """Before: taken modulo the depth, so [-6] on 5 layers silently meant layer 4 (and
    [5] layer 0, refused with a message about layer 0)."""
    with pytest.raises(ValueError, match=re.escape(f'hrca_layer_ids {ids}: ') + r'.* are not '
                       r'layers of the 5-layer decoder\. Use ids in 0\.\.4 \(or -1 for the last\)'):
        build_head(with_hrca=True, hrca_layer_ids=ids, transformer_decoder=_decoder(5))
    assert build_head(with_hrca=True, hrca_layer_ids=[-1],
                      transformer_decoder=_decoder(5)).layer_levels[-1] == -1


def test_hrca_layer_before_any_low_resolution_layer_is_refused():
    with pytest.raises(ValueError, match='HRCA layer 0 needs an earlier 1/32-level layer'):
        build_head(with_hrca=True, hrca_layer_ids=[0], transformer_decoder=_decoder(5))
