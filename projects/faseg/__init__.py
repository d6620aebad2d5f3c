"""FASeg: dynamic focus-aware positional queries (DFPQ) and high-resolution
cross-attention (HRCA) on mmseg's Mask2Former head (thesis chapter 5)."""
try:
    import mmdet  # noqa: F401
except ImportError as err:  # mmseg would silently fall back to a bare BaseModule
    raise ImportError('projects.faseg needs mmdet (>=3.0) for Mask2Former: '
                      'pip install "mmdet>=3.0.0"') from err

from .decoder_layer import FASegDecoderLayer, WeightedCrossAttention
from .dfpq import DFPQ
from .faseg_head import FASegHead
from .hrca import gather_tokens, num_windows, select_hr_indices
from .pixel_decoder import EncoderPEGPixelDecoder
from .positional_encoding import ConditionalPositionalEncoding

__all__ = [
    'FASegHead', 'FASegDecoderLayer', 'WeightedCrossAttention', 'DFPQ',
    'ConditionalPositionalEncoding', 'EncoderPEGPixelDecoder', 'select_hr_indices',
    'gather_tokens', 'num_windows'
]
