"""Recognise a ViT state dict's naming scheme and rename it to ours (timm's names).

Supported: MMAdapt/timm (incl. jax-converted timm weights), mmpretrain
``VisionTransformer``, mmseg ``VisionTransformer``, HF ``Dinov2Model`` and Google's JAX
``.npz`` archives (``ViT-B_16.npz``, big_vision; see :mod:`.jax_npz`). Keys that do
not belong to a ViT backbone (classification heads, HF's mask token) are returned
separately so the caller can report them rather than drop them silently.
"""
import re
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor

from .jax_npz import UNUSED_PREFIX, from_jax, is_jax_vit

StateDict = Dict[str, Tensor]

# Wrappers whose keys hold a backbone next to other parts (heads, necks, decoders).
BACKBONE_PREFIXES = ('backbone.', 'dinov2.', 'vit.')


def strip_prefix(state: StateDict, prefix: str) -> StateDict:
    if not prefix:
        return dict(state)
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        raise KeyError(f"no checkpoint key starts with prefix '{prefix}'. First keys: "
                       f'{list(state)[:5]}. Set init_cfg.prefix to the right one.')
    return picked


def split_backbone(state: StateDict) -> Tuple[StateDict, StateDict]:
    """(backbone keys without their wrapper prefix, every other key)."""
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    for prefix in BACKBONE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            backbone = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            others = {k: v for k, v in state.items() if not k.startswith(prefix)}
            return backbone, others
    return dict(state), {}


def detect_format(state: StateDict) -> str:
    keys = set(state)
    if is_jax_vit(state):
        return 'jax'
    if any(k.startswith('encoder.layer.') for k in keys) or 'embeddings.cls_token' in keys:
        return 'hf_dinov2'
    if any('attn.attn.in_proj_weight' in k for k in keys):
        return 'mmseg'
    if any(k.startswith('layers.') for k in keys):
        return 'mmpretrain'
    if any(k.startswith('blocks.') for k in keys) or 'patch_embed.proj.weight' in keys:
        return 'timm'
    raise ValueError('unrecognised ViT checkpoint: expected timm (blocks.*), mmpretrain / '
                     'mmseg (layers.*), HF Dinov2 (encoder.layer.*) or JAX .npz '
                     '(embedding/kernel, Transformer/encoderblock_*) keys; first keys: '
                     f'{sorted(keys)[:8]}')


def _rename(state: StateDict, rules: List[Tuple[str, str]]) -> StateDict:
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


_OPENMMLAB_BLOCK_RULES = [
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.attn\.gamma1\.weight$', r'blocks.\1.ls1.gamma'),
    (r'^layers\.(\d+)\.ffn\.gamma2\.weight$', r'blocks.\1.ls2.gamma'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^layers\.(\d+)\.attn\.attn\.in_proj_weight$', r'blocks.\1.attn.qkv.weight'),
    (r'^layers\.(\d+)\.attn\.attn\.in_proj_bias$', r'blocks.\1.attn.qkv.bias'),
    (r'^layers\.(\d+)\.attn\.attn\.out_proj\.', r'blocks.\1.attn.proj.'),
    (r'^layers\.(\d+)\.attn\.', r'blocks.\1.attn.'),
    (r'^ln1\.', 'norm.'),
    (r'^ln2\.', 'fc_norm.'),
]


def from_openmmlab(state: StateDict) -> StateDict:
    return _rename(state, _OPENMMLAB_BLOCK_RULES)


def from_hf_dinov2(state: StateDict) -> StateDict:
    rules = [
        (r'^embeddings\.cls_token$', 'cls_token'),
        (r'^embeddings\.position_embeddings$', 'pos_embed'),
        (r'^embeddings\.patch_embeddings\.projection\.', 'patch_embed.proj.'),
        (r'^encoder\.layer\.(\d+)\.norm1\.', r'blocks.\1.norm1.'),
        (r'^encoder\.layer\.(\d+)\.norm2\.', r'blocks.\1.norm2.'),
        (r'^encoder\.layer\.(\d+)\.layer_scale1\.lambda1$', r'blocks.\1.ls1.gamma'),
        (r'^encoder\.layer\.(\d+)\.layer_scale2\.lambda1$', r'blocks.\1.ls2.gamma'),
        (r'^encoder\.layer\.(\d+)\.attention\.output\.dense\.', r'blocks.\1.attn.proj.'),
        (r'^encoder\.layer\.(\d+)\.mlp\.fc1\.', r'blocks.\1.mlp.fc1.'),
        (r'^encoder\.layer\.(\d+)\.mlp\.fc2\.', r'blocks.\1.mlp.fc2.'),
        (r'^layernorm\.', 'norm.'),
    ]
    qkv: Dict[str, Dict[str, Tensor]] = {}
    rest = {}
    for key, value in state.items():
        m = re.match(r'^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.'
                     r'(weight|bias)$', key)
        if m:
            qkv.setdefault(f'blocks.{m.group(1)}.attn.qkv.{m.group(3)}', {})[m.group(2)] = value
        else:
            rest[key] = value
    out = _rename(rest, rules)
    for key, parts in qkv.items():
        if set(parts) != {'query', 'key', 'value'}:
            raise KeyError(f'HF Dinov2 checkpoint lacks {set(["query", "key", "value"]) - set(parts)}'
                           f' for {key}.')
        out[key] = torch.cat([parts['query'], parts['key'], parts['value']], dim=0)
    return out


CONVERTERS: Dict[str, Callable[[StateDict], StateDict]] = {
    'timm': dict,
    'mmpretrain': from_openmmlab,
    'mmseg': from_openmmlab,
    'hf_dinov2': from_hf_dinov2,
    'jax': from_jax,
}

# Keys of other checkpoints that are not part of a ViT backbone.
NON_BACKBONE = re.compile(r'^(head\.|heads\.|fc_norm\.|pre_logits\.|mask_token$|'
                          r'embeddings\.mask_token$|dist_token$|head_dist\.|reg_token$|'
                          + re.escape(UNUSED_PREFIX) + ')')


def to_mmadapt(state: StateDict) -> Tuple[StateDict, str, StateDict]:
    """Returns (backbone state with our names, detected format, non-backbone leftovers).

    ``state`` must already be the backbone's own keys (see :func:`split_backbone`)."""
    fmt = detect_format(state)
    converted = CONVERTERS[fmt](state)
    backbone = {k: v for k, v in converted.items() if not NON_BACKBONE.match(k)}
    leftovers = {k: v for k, v in converted.items() if NON_BACKBONE.match(k)}
    if 'pos_embed' in backbone and backbone['pos_embed'].dim() == 2:
        backbone['pos_embed'] = backbone['pos_embed'][None]
    return backbone, fmt, leftovers
