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
], ids=['dfpq-pool', 'key-pos'])
def test_unknown_option_names_the_allowed_values(kw, match):
    with pytest.raises(ValueError, match=match):
        build_head(**kw)


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
