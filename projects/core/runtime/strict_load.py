"""``load_from`` refuses a checkpoint that does not fit the model, for every runner.

mmengine 0.10.7's ``Runner.load_or_resume`` loads ``load_from`` with
``Runner.load_checkpoint(filename)``, whose ``strict=False`` only *logs* missing,
unexpected and shape-mismatched keys. ``tools/test.py CONFIG CKPT`` (which sets
``load_from``), fine-tuning with ``--cfg-options load_from=...`` and mmseg's /
mmpretrain's own tools (``mim train/test``) therefore run another model's checkpoint
-- a LoRA checkpoint under the plain config, a wider ViT's -- and print a number for a
partly random model, exit code 0.

Importing :mod:`projects` wraps two ``Runner`` methods once (:func:`patch_runner_load`,
idempotent):

* ``load_or_resume`` marks the runner while it loads ``load_from`` *without* resume;
* ``load_checkpoint``, for that marked file only, does what mmengine does (read the
  file, ``after_load_checkpoint`` hooks, ``revise_keys``, load into the unwrapped
  model) but with :func:`load_state_dict_reporting`, which loads what fits and returns
  what did not. Anything missing, unexpected or shape-mismatched raises
  :class:`CheckpointMismatchError` naming the file, the first keys and the fix.

A deliberate partial load (a classifier checkpoint into a segmentor) is switched on
with the config key ``load_from_partial=True`` (``--cfg-options load_from_partial=True``,
or ``--partial-load`` of our tools); it logs one line of what was and was not loaded.

Adapter-only checkpoints (``projects/core/checkpoint/adapter_only.py``) are completed
with the model's base before loading, on both paths: ``load_from`` (``tools/test.py``)
and ``resume`` (``tools/train.py --resume``); a base other than the recorded one is
refused (:class:`~projects.core.checkpoint.adapter_only.AdapterBaseError`).

Unchanged: ``resume`` of a full checkpoint (mmengine's own non-strict path, the same
model by construction), direct ``runner.load_checkpoint(...)`` calls, ``init_cfg``
pretrained loading (:mod:`projects.core.checkpoint.vit_loader`, which expects the
parameters a method adds to be missing) and tools that load weights themselves (model converters, deployment).
The ``strict`` argument of ``load_checkpoint`` is not used for ``load_from`` (mmengine
passes ``False`` there); the switch above is the only way to a partial load.
Subclasses that override ``load_or_resume`` without calling it are not checked.
"""
import functools
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
from torch import nn

from ..engine.ddp import unwrap_model

__all__ = ['PARTIAL_KEY', 'CheckpointMismatchError', 'LoadReport', 'load_state_dict_reporting',
           'revised_state_dict', 'patch_runner_load', 'is_patched']

#: Config key that allows a ``load_from`` checkpoint to fit the model only in part.
PARTIAL_KEY = 'load_from_partial'

_MARK = '_mmadapt_checks_load_from'
_LOADING = '_mmadapt_loading_from'  # runner attribute: the load_from file being loaded
_SHOW = 5  # keys named per kind in messages
# torch's Module._load_from_state_dict: "size mismatch for {key}: copying a param ..."
_SIZE_MISMATCH = re.compile(r'^size mismatch for (\S+): copying a param')

Shape = Tuple[int, ...]


class CheckpointMismatchError(RuntimeError):
    """A ``load_from`` checkpoint that does not fit the model (and no partial switch)."""


@dataclass
class LoadReport:
    """What a load left out. ``total`` counts the model's state-dict tensors
    (``num_batches_tracked`` excluded, as mmengine ignores them when missing)."""
    total: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Shape, Shape]] = field(default_factory=list)  # ckpt, model
    errors: List[str] = field(default_factory=list)  # other copy errors, verbatim

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.errors)

    @property
    def loaded(self) -> int:
        return self.total - len(self.missing) - len(self.mismatched) - len(self.errors)


def _shape(value: Any) -> Shape:
    return tuple(getattr(value, 'shape', ()))


def revised_state_dict(checkpoint: Dict[str, Any],
                       revise_keys: Sequence[Tuple[str, str]]) -> 'OrderedDict[str, Any]':
    """The model weights of a checkpoint with ``revise_keys`` applied, as mmengine's
    ``_load_checkpoint_to_model`` builds them (``state_dict`` entry or the dict itself,
    metadata kept)."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    metadata = getattr(state_dict, '_metadata', OrderedDict())
    state_dict = OrderedDict(state_dict)  # a plain dict cannot carry _metadata
    for pattern, repl in revise_keys:
        state_dict = OrderedDict((re.sub(pattern, repl, k), v) for k, v in state_dict.items())
    state_dict._metadata = metadata
    return state_dict


def load_state_dict_reporting(model: nn.Module, state_dict: Dict[str, Any]) -> LoadReport:
    """Load what fits of ``state_dict`` into ``model`` exactly as mmengine's
    ``load_state_dict`` does (module by module, so load pre-hooks such as a ViT's
    ``pos_embed`` resizing still apply), and return what did not fit instead of only
    logging it. The model is modified even when the report is not clean."""
    model = unwrap_model(model)
    metadata = getattr(state_dict, '_metadata', None)
    missing: List[str] = []
    unexpected: List[str] = []
    errors: List[str] = []

    def load(module: nn.Module, local: Dict[str, Any], prefix: str = '') -> None:
        if is_model_wrapper(module) or isinstance(module, BaseTTAModel):
            module = module.module
        local_metadata = {} if metadata is None else metadata.get(prefix[:-1], {})
        module._load_from_state_dict(local, prefix, local_metadata, True, missing,
                                     unexpected, errors)
        for name, child in module._modules.items():
            if child is not None:
                child_prefix = f'{prefix}{name}.'
                load(child, {k: v for k, v in local.items() if k.startswith(child_prefix)},
                     child_prefix)

    load(model, dict(state_dict))
    own = model.state_dict()
    report = LoadReport(total=sum('num_batches_tracked' not in k for k in own),
                        missing=[k for k in missing if 'num_batches_tracked' not in k],
                        unexpected=list(unexpected))
    for msg in errors:
        hit = _SIZE_MISMATCH.match(msg)
        key = hit.group(1) if hit else None
        if key in own:
            report.mismatched.append((key, _shape(state_dict.get(key)), _shape(own[key])))
        else:
            report.errors.append(msg)
    return report


def _first(items: List[str], what: str) -> str:
    more = f'; ... (+{len(items) - _SHOW} more)' if len(items) > _SHOW else ''
    return f'{len(items)} {what}: {"; ".join(items[:_SHOW])}{more}'


def _fmt_shape(shape: Shape) -> str:
    return '[' + ', '.join(map(str, shape)) + ']'


def _kinds(report: LoadReport, ckpt: Dict[str, Any], own: Dict[str, Any]) -> List[str]:
    """One line per kind of misfit, each with its first keys (and shapes)."""
    lines = []
    if report.missing:
        lines.append(_first([f'{k} {_fmt_shape(_shape(own.get(k)))}' for k in report.missing],
                            'missing (model tensors the checkpoint does not have)'))
    if report.unexpected:
        lines.append(_first([f'{k} {_fmt_shape(_shape(ckpt.get(k)))}'
                             for k in report.unexpected],
                            'unexpected (checkpoint tensors this model does not have)'))
    if report.mismatched:
        lines.append(_first([f'{k} {_fmt_shape(c)} (model: {_fmt_shape(m)})'
                             for k, c, m in report.mismatched],
                            'shape-mismatched (checkpoint shape, model shape)'))
    if report.errors:
        lines.append(_first(report.errors, 'other load errors'))
    return lines


def refusal_message(path: str, report: LoadReport, model: nn.Module,
                    checkpoint: Dict[str, Any], state_dict: Dict[str, Any]) -> str:
    """Why ``path`` is refused, its first misfits, and the ways out."""
    from ...vit.param_roles import new_parameter_names  # lazy: projects.vit imports a lot
    model = unwrap_model(model)
    own = model.state_dict()
    lines = [f'load_from checkpoint {path} does not fit the {type(model).__name__} of this '
             f'config ({report.loaded} of its {report.total} tensors fit):']
    lines += [f'  - {line}' for line in _kinds(report, state_dict, own)]
    new = new_parameter_names(model)
    if report.missing and all(k in new for k in report.missing):
        lines.append('  All missing keys are parameters this config adds to a pretrained '
                     'ViT (LoRA, adapters, ...): to start training from a checkpoint '
                     "without them, give it as the backbone's init_cfg pretrained checkpoint.")
    meta = checkpoint.get('meta', None)
    run = meta.get('experiment_name', None) if isinstance(meta, dict) else None
    if run:
        stored = " (its config is in the checkpoint's meta['cfg'])" if 'cfg' in meta else ''
        lines.append(f'  The checkpoint was written by the run {run}{stored}.')
    effects = []
    if report.total > report.loaded:
        effects.append(f'{report.total - report.loaded} model tensors would keep their '
                       'initial values')
    if report.unexpected:
        effects.append(f'{len(report.unexpected)} trained checkpoint tensors would be dropped')
    lines.append(f'Loaded like this, {" and ".join(effects)}: the results would not be '
                 "the checkpoint's model's. Use the config the checkpoint was trained with; "
                 'for a deliberate partial load (e.g. fine-tuning a segmentor from a '
                 f'classifier checkpoint) set {PARTIAL_KEY}=True (--cfg-options '
                 f'{PARTIAL_KEY}=True, or --partial-load of tools/train.py / tools/test.py).')
    return '\n'.join(lines)


def partial_summary(path: str, report: LoadReport) -> str:
    """The one line a deliberate partial load logs."""
    if report.clean:
        return f'{PARTIAL_KEY}: {path} fits the model entirely ({report.total} tensors loaded)'
    skipped = []
    if report.missing:
        skipped.append(f'{len(report.missing)} model tensors missing in the checkpoint '
                       f'(e.g. {", ".join(report.missing[:3])})')
    if report.mismatched:
        skipped.append(f'{len(report.mismatched)} shape-mismatched '
                       f'(e.g. {", ".join(k for k, _, _ in report.mismatched[:3])})')
    if report.unexpected:
        skipped.append(f'{len(report.unexpected)} checkpoint tensors unused '
                       f'(e.g. {", ".join(report.unexpected[:3])})')
    if report.errors:
        skipped.append(f'{len(report.errors)} other errors ({report.errors[0]})')
    return (f'{PARTIAL_KEY}: loaded {report.loaded} of {report.total} model tensors from '
            f'{path}; not loaded: ' + '; '.join(skipped))


def load_from_checked(runner: Runner, filename: str,
                      map_location: Union[str, Callable] = 'cpu',
                      revise_keys: Sequence[Tuple[str, str]] = ((r'^module.', ''),)
                      ) -> Dict[str, Any]:
    """mmengine 0.10.7's ``Runner.load_checkpoint`` for ``load_from``, refusing (or,
    with :data:`PARTIAL_KEY`, summarising) a checkpoint that does not fit."""
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    state_dict = _with_base(runner, checkpoint, revised_state_dict(checkpoint, revise_keys),
                            filename)
    report = load_state_dict_reporting(runner.model, state_dict)
    if not report.clean:
        if not runner.cfg.get(PARTIAL_KEY, False):
            raise CheckpointMismatchError(
                refusal_message(filename, report, runner.model, checkpoint, state_dict))
        print_log(partial_summary(filename, report), logger=runner.logger,
                  level=logging.WARNING)
    runner._has_loaded = True
    runner.logger.info(f'Load checkpoint from {filename}')
    return checkpoint


def _with_base(runner: Runner, checkpoint: Dict[str, Any], state_dict: Dict[str, Any],
               filename: str) -> Dict[str, Any]:
    """``state_dict``, completed with the model's base if the checkpoint is
    adapter-only (lazy import: the checkpoint package imports this module)."""
    from ..checkpoint.adapter_only import complete_state_dict, is_adapter_checkpoint
    if not is_adapter_checkpoint(checkpoint):
        return state_dict
    return complete_state_dict(runner.model, checkpoint, state_dict, filename)


def load_any_checked(runner: Runner, filename: str, map_location: Union[str, Callable],
                     strict: bool, revise_keys: Sequence[Tuple[str, str]]) -> Dict[str, Any]:
    """mmengine 0.10.7's ``Runner.load_checkpoint`` (the resume path), reading the file
    once: a full checkpoint loads as mmengine loads it; an adapter-only one is
    completed with the base and must then fit the model entirely."""
    from ..checkpoint.adapter_only import is_adapter_checkpoint
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    model = unwrap_model(runner.model)
    if is_adapter_checkpoint(checkpoint):
        state_dict = _with_base(runner, checkpoint, revised_state_dict(checkpoint, revise_keys),
                                filename)
        report = load_state_dict_reporting(model, state_dict)
        if not report.clean:
            raise CheckpointMismatchError(
                refusal_message(filename, report, model, checkpoint, state_dict))
    else:
        _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
    runner._has_loaded = True
    runner.logger.info(f'Load checkpoint from {filename}')
    return checkpoint


def is_patched() -> bool:
    return getattr(Runner.__dict__['load_or_resume'], _MARK, False)


def patch_runner_load() -> bool:
    """Wrap ``Runner.load_or_resume`` / ``Runner.load_checkpoint`` (once per process);
    returns whether it patched now."""
    if is_patched():
        return False
    original_load_or_resume = Runner.__dict__['load_or_resume']
    original_load_checkpoint = Runner.__dict__['load_checkpoint']  # for functools.wraps

    @functools.wraps(original_load_or_resume)
    def load_or_resume(self) -> None:
        # mmengine's branch for load_from: nothing loaded yet, no resume
        if self._has_loaded or self._resume or self._load_from is None:
            return original_load_or_resume(self)
        setattr(self, _LOADING, self._load_from)
        try:
            return original_load_or_resume(self)
        finally:
            setattr(self, _LOADING, None)

    @functools.wraps(original_load_checkpoint)
    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):  # noqa: B006 (mmengine's)
        if getattr(self, _LOADING, None) is None or filename != getattr(self, _LOADING):
            return load_any_checked(self, filename, map_location, strict, revise_keys)
        return load_from_checked(self, filename, map_location, revise_keys)

    setattr(load_or_resume, _MARK, True)
    Runner.load_or_resume = load_or_resume
    Runner.load_checkpoint = load_checkpoint
    return True


patch_runner_load()
