"""Google's JAX ViT checkpoints (``.npz``) read directly, and written back.

PYRA, NOAH, SPT and DyT fine-tune the original ImageNet-21k ``ViT-B_16.npz`` /
``ViT-L_16.npz`` of google-research/vision_transformer; big_vision and the AugReg
release use the same archive format. An archive maps Flax parameter paths to arrays:

* ``embedding/kernel`` (kh, kw, C, D) is the patch conv in HWIO -> OIHW;
* ``cls`` (1, 1, D); ``Transformer/posembed_input/pos_embedding`` (1, 1 + N, D), or
  big_vision's top-level ``pos_embedding`` (1, N, D) that leaves the class token out;
* per block ``Transformer/encoderblock_{i}/`` (or big_vision's scanned
  ``Transformer/encoderblock/`` with the layer as leading axis): two ``LayerNorm_k``
  (``scale``/``bias``), ``MultiHeadDotProductAttention_k`` with ``query``/``key``/
  ``value`` kernels (D, H, Dh) and biases (H, Dh) -- our fused ``qkv`` Linear is their
  (H * Dh, D) transposes stacked -- and ``out`` (H, Dh, D), ``MlpBlock_k/Dense_{0,1}``
  kernels (in, out);
* ``Transformer/encoder_norm``, ``pre_logits`` and ``head``.

Flax ``Dense`` kernels are (in, out), torch ``Linear`` weights (out, in). Names become
ours (timm's), so :mod:`.vit_keys` and the loader treat the result as any other
checkpoint (position embeddings resized there). :func:`jax_from_timm` is the inverse;
the tests check its files against timm's own ``.npz`` loader.
"""
import re
import zipfile
import zlib
from typing import Dict, List

import numpy as np
import torch
from torch import Tensor

StateDict = Dict[str, Tensor]
# Flax parameter trees saved by the original training code, by its optimizer wrapper,
# by big_vision and by big_vision's two-tower (image) models.
JAX_PREFIXES = ('', 'opt/target/', 'params/', 'params/img/')
# Our names for JAX keys that belong to no ViT backbone part (optimizer state, ...):
# reported by the loader as not loaded, never dropped silently.
UNUSED_PREFIX = 'jax_unused.'
_BLOCK = re.compile(r'^Transformer/encoderblock(?:_(\d+))?/(.+)$')
_SUB = re.compile(r'^(LayerNorm|MultiHeadDotProductAttention|MlpBlock)_(\d+)/(.+)$')


class NpzReadError(RuntimeError):
    """An .npz archive that cannot be read (truncated, not an archive, pickled)."""


def is_npz_archive(path: str) -> bool:
    """A NumPy archive under any name: a zip of ``.npy`` members without the
    ``data.pkl`` every torch zip checkpoint holds."""
    if '://' in path or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith('.npy') for n in names) and \
        not any(n.endswith('data.pkl') for n in names)


def _to_tensor(array: np.ndarray) -> Tensor:
    """float arrays as they are; raw bfloat16 (numpy has no such dtype, archives
    written from JAX store it as 2-byte void) as float32."""
    if array.dtype.kind == 'V' and array.dtype.itemsize == 2:
        bits = torch.from_numpy(np.ascontiguousarray(array).view(np.int16))
        return bits.view(torch.bfloat16).float()
    if array.dtype.kind not in 'fiub':
        raise TypeError(f'dtype {array.dtype} is not numeric')
    return torch.from_numpy(np.ascontiguousarray(array))


def read_npz(path: str) -> StateDict:
    """Every array of the archive as a tensor, under its archive name."""
    if '://' in path:
        raise ValueError(f'checkpoint {path}: .npz archives are read from local files '
                         'only; download it (e.g. gsutil cp / wget) and point '
                         'init_cfg.checkpoint at the copy.')
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError('it holds a single array, not named parameters')
        with archive:
            state = {}
            for name in archive.files:
                try:
                    state[name] = _to_tensor(archive[name])
                except TypeError as err:
                    raise ValueError(f'array {name!r}: {err}') from err
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise NpzReadError(
            f'checkpoint {path} is not a readable NumPy .npz archive ({type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else ""}). It may be truncated by an '
            'interrupted download: download it again (ViT-B_16.npz / ViT-L_16.npz from '
            'gs://vit_models/imagenet21k/), or point init_cfg.checkpoint at a .pth.') from err
    return state


def is_jax_vit(state: StateDict) -> bool:
    return any(f'{p}embedding/kernel' in state for p in JAX_PREFIXES)


def _prefix(state: StateDict) -> str:
    for prefix in sorted(JAX_PREFIXES, key=len, reverse=True):
        if f'{prefix}embedding/kernel' in state:
            return prefix
    raise ValueError('no embedding/kernel key: not a JAX ViT checkpoint')


def _dense(kernel: Tensor) -> Tensor:
    return kernel.t()


def _block_scopes(items: Dict[str, Tensor], block: str) -> Dict[str, str]:
    """Which LayerNorm_k is norm1/norm2 and which attention / MLP index the block uses
    (the original code numbers them 0, 1, 2, 3 in call order, big_vision 0, 0, 1, 0)."""
    found: Dict[str, List[int]] = {}
    for key in items:
        m = _SUB.match(key)
        if m:
            found.setdefault(m.group(1), [])
            if int(m.group(2)) not in found[m.group(1)]:
                found[m.group(1)].append(int(m.group(2)))
    want = {'LayerNorm': 2, 'MultiHeadDotProductAttention': 1, 'MlpBlock': 1}
    for kind, count in want.items():
        if len(found.get(kind, [])) != count:
            raise KeyError(f'JAX ViT block {block}: expected {count} {kind}_k scope(s), found '
                           f'{sorted(found.get(kind, []))}; the archive is not a ViT-B/L '
                           'style checkpoint (or it is damaged).')
    ln = sorted(found['LayerNorm'])
    return {f'LayerNorm_{ln[0]}': 'norm1', f'LayerNorm_{ln[1]}': 'norm2',
            f'MultiHeadDotProductAttention_{found["MultiHeadDotProductAttention"][0]}': 'attn',
            f'MlpBlock_{found["MlpBlock"][0]}': 'mlp'}


def _convert_block(items: Dict[str, Tensor], block: str, out_prefix: str) -> StateDict:
    scopes = _block_scopes(items, block)
    out: StateDict = {}
    qkv: Dict[str, Dict[str, Tensor]] = {'weight': {}, 'bias': {}}
    for key, value in items.items():
        scope, _, rest = key.partition('/')
        part = scopes.get(scope)
        if part in ('norm1', 'norm2') and rest in ('scale', 'bias'):
            out[f'{out_prefix}{part}.{"weight" if rest == "scale" else "bias"}'] = value
        elif part == 'attn' and rest.split('/')[0] in ('query', 'key', 'value'):
            name, _, leaf = rest.partition('/')
            if leaf == 'kernel':  # (D, H, Dh) -> (H * Dh, D)
                qkv['weight'][name] = value.flatten(1).t()
            elif leaf == 'bias':  # (H, Dh)
                qkv['bias'][name] = value.reshape(-1)
            else:
                out[f'{out_prefix}{key}'] = value
        elif part == 'attn' and rest == 'out/kernel':  # (H, Dh, D) -> (D, H * Dh)
            out[f'{out_prefix}attn.proj.weight'] = value.flatten(0, 1).t()
        elif part == 'attn' and rest == 'out/bias':
            out[f'{out_prefix}attn.proj.bias'] = value
        elif part == 'mlp' and re.fullmatch(r'Dense_[01]/(kernel|bias)', rest):
            fc = f'fc{int(rest[6]) + 1}'
            leaf = rest.split('/')[1]
            out[f'{out_prefix}mlp.{fc}.{"weight" if leaf == "kernel" else "bias"}'] = \
                _dense(value) if leaf == 'kernel' else value
        else:  # unknown: kept under a recognisable name, reported as unexpected
            out[f'{out_prefix}{key}'] = value
    for leaf, parts in qkv.items():
        if parts and set(parts) != {'query', 'key', 'value'}:
            raise KeyError(f'JAX ViT block {block}: attention {leaf} of '
                           f'{sorted({"query", "key", "value"} - set(parts))} missing; the '
                           'archive is damaged or not a ViT checkpoint.')
        if parts:
            out[f'{out_prefix}attn.qkv.{leaf}'] = torch.cat(
                [parts['query'], parts['key'], parts['value']], dim=0)
    return out


def from_jax(state: StateDict) -> StateDict:
    """JAX / big_vision ViT parameter names and layouts -> ours (timm's)."""
    prefix = _prefix(state)
    out: StateDict = {}
    blocks: Dict[str, Dict[str, Tensor]] = {}
    stacked: Dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            out[UNUSED_PREFIX + key] = value
            continue
        name = key[len(prefix):]
        m = _BLOCK.match(name)
        if m and m.group(1) is not None:
            blocks.setdefault(m.group(1), {})[m.group(2)] = value
        elif m:
            stacked[m.group(2)] = value
        elif name == 'embedding/kernel':
            if value.dim() != 4:
                raise ValueError(f'embedding/kernel has shape {tuple(value.shape)}; only the '
                                 'conv patch embedding (kh, kw, C, D) of ViT checkpoints is '
                                 'supported (not NaFlex / linear patch embeddings).')
            out['patch_embed.proj.weight'] = value.permute(3, 2, 0, 1)  # HWIO -> OIHW
        elif name == 'embedding/bias':
            out['patch_embed.proj.bias'] = value
        elif name == 'cls':
            out['cls_token'] = value.reshape(1, 1, -1)
        elif name in ('Transformer/posembed_input/pos_embedding', 'pos_embedding'):
            out['pos_embed'] = value.reshape(1, -1, value.shape[-1])
        elif name.startswith('Transformer/encoder_norm/'):
            leaf = name.rsplit('/', 1)[1]
            out[f'norm.{"weight" if leaf == "scale" else leaf}'] = value
        elif name in ('head/kernel', 'pre_logits/kernel'):
            out[f'{"head" if name[0] == "h" else "pre_logits.fc"}.weight'] = _dense(value)
        elif name in ('head/bias', 'pre_logits/bias'):
            out[f'{"head" if name[0] == "h" else "pre_logits.fc"}.bias'] = value
        elif name.startswith(('head/', 'MAPHead_0/', 'pre_logits/')):
            out['head.' + name] = value  # other heads: not part of the backbone
        else:
            out[name] = value  # unknown: reported as unexpected by the loader
    if stacked:
        depth = {v.shape[0] for v in stacked.values()}
        if len(depth) != 1:
            raise KeyError(f'scanned Transformer/encoderblock arrays disagree on the number '
                           f'of layers: {sorted(depth)}')
        for i in range(depth.pop()):
            blocks[str(i)] = {k: v[i] for k, v in stacked.items()}
    for idx, items in blocks.items():
        out.update(_convert_block(items, f'{prefix}Transformer/encoderblock_{idx}',
                                  f'blocks.{idx}.'))
    pos = out.get('pos_embed')
    if pos is not None and _is_square(pos.shape[1]):
        # big_vision adds positions before prepending a class token: the class token
        # has none (zero); our table, as timm's, has a class row
        out['pos_embed'] = torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], dim=1)
    return out


def _is_square(n: int) -> bool:
    side = int(round(n ** 0.5))
    return side * side == n


def jax_from_timm(state: StateDict, num_heads: int) -> Dict[str, np.ndarray]:
    """Our (timm) ViT state dict under the original ViT-B_16.npz names and layouts --
    the inverse of :func:`from_jax` for that layout (``np.savez`` writes the file)."""
    def arr(t: Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    out = {'embedding/kernel': arr(state['patch_embed.proj.weight'].permute(2, 3, 1, 0)),
           'embedding/bias': arr(state['patch_embed.proj.bias']),
           'cls': arr(state['cls_token']),
           'Transformer/posembed_input/pos_embedding': arr(state['pos_embed']),
           'Transformer/encoder_norm/scale': arr(state['norm.weight']),
           'Transformer/encoder_norm/bias': arr(state['norm.bias'])}
    depth = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    for i in range(depth):
        b, p = f'blocks.{i}.', f'Transformer/encoderblock_{i}/'
        mha = p + 'MultiHeadDotProductAttention_1/'
        dim = state[b + 'attn.qkv.weight'].shape[1]
        for j, name in enumerate(('query', 'key', 'value')):
            w = state[b + 'attn.qkv.weight'][j * dim:(j + 1) * dim]  # (H * Dh, D)
            out[f'{mha}{name}/kernel'] = arr(w.t().reshape(dim, num_heads, -1))
            out[f'{mha}{name}/bias'] = arr(
                state[b + 'attn.qkv.bias'][j * dim:(j + 1) * dim].reshape(num_heads, -1))
        out[mha + 'out/kernel'] = arr(state[b + 'attn.proj.weight'].t().reshape(
            num_heads, -1, dim))
        out[mha + 'out/bias'] = arr(state[b + 'attn.proj.bias'])
        for norm, scope in (('norm1', 'LayerNorm_0'), ('norm2', 'LayerNorm_2')):
            out[f'{p}{scope}/scale'] = arr(state[f'{b}{norm}.weight'])
            out[f'{p}{scope}/bias'] = arr(state[f'{b}{norm}.bias'])
        for r in range(2):
            out[f'{p}MlpBlock_3/Dense_{r}/kernel'] = arr(state[f'{b}mlp.fc{r + 1}.weight'].t())
            out[f'{p}MlpBlock_3/Dense_{r}/bias'] = arr(state[f'{b}mlp.fc{r + 1}.bias'])
    if 'head.weight' in state:
        out['head/kernel'] = arr(state['head.weight'].t())
        out['head/bias'] = arr(state['head.bias'])
    return out
