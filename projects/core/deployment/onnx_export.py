"""ONNX export of MMAdapt models, checked against PyTorch by onnxruntime.

An export is only reported as done when onnxruntime, run on inputs, gives what PyTorch
gives: ``max |onnx - torch| <= rel_tol * max(1, max |torch|)`` on every output
(:func:`tolerance`, ``rel_tol = 1e-4``). The graph is traced on one input and checked on
that input and on others it was not traced on, so a value that the trace froze (a
data-dependent count, a Python branch on a tensor) shows up as a mismatch instead of
passing on the very input that produced it.

What is exported (:class:`TensorForward`):

- classifiers (mmpretrain): ``model(inputs, mode='tensor')``, the head's logits before
  softmax;
- segmentors (mmseg): ``model.encode_decode(inputs, metas)`` with the metainfo fixed to
  the export size (``img_shape = pad_shape = ori_shape = (H, W)``): backbone, neck and
  decode head, logits ``(B, K, H, W)`` resized to the input. Slide inference and the
  resize back to the original image stay outside the graph.

Both take the preprocessed batch ``(B, 3, H, W)``, normalised and in the channel order
the data preprocessor produces (its mean / std / bgr_to_rgb are written into the
model's metadata, :func:`preprocess_metadata`).

Models are folded first (:func:`deployable_model`): LoRA / SPT-LoRA go into the weights
through :mod:`projects.core.peft.deploy`, so the graph is the plain model's. Models
whose graph cannot equal PyTorch are refused before export (:func:`refusal_reason`):
the packed eval of attention and per-image gates (DyT's attention, attention-MLP and
layer dispatch), whose per-image counts a trace freezes; their dense-masked form
(:func:`use_dense_gates`) exports instead, with the same outputs and none of the
savings. MLP gates (DyT's MLP dispatch) export packed.

The TorchScript exporter is used (``dynamo=False``): the torch.export-based one needs
``onnxscript``, which is not a dependency.
"""
import copy
import io
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from torch import Tensor, nn

from ...vit.interfaces import GateDecision, TokenGate
from ..engine.model_builder import build_model_from_cfg
from ..peft.deploy import deploy_config, folded_model_state
from ..peft.lora import NothingToFoldError

DEFAULT_OPSET = 17
REL_TOL = 1e-4


class ExportRefused(RuntimeError):
    """A model whose exported graph would not compute what PyTorch computes."""


class ExportMismatch(RuntimeError):
    """onnxruntime's outputs differ from PyTorch's beyond the tolerance."""

    def __init__(self, message: str, report: 'CheckReport') -> None:
        super().__init__(message)
        self.report = report


# ----------------------------------------------------------------- comparison
def tolerance(ref: np.ndarray, rel_tol: float = REL_TOL) -> float:
    """``rel_tol`` of the output's scale, and never below ``rel_tol`` itself."""
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return rel_tol * max(1.0, scale)


class OutputDiff(NamedTuple):
    """One output on one input: the largest absolute difference and its tolerance."""
    name: str
    input_name: str
    max_diff: float
    scale: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tol  # NaN compares False: a NaN output fails

    def __str__(self) -> str:
        verdict = 'ok' if self.ok else 'MISMATCH'
        return (f'{self.name} on {self.input_name}: max |diff| {self.max_diff:.3g} at '
                f'output scale {self.scale:.3g} (tolerance {self.tol:.3g}): {verdict}')


def compare(refs: Sequence[np.ndarray], outs: Sequence[np.ndarray], names: Sequence[str],
            input_name: str, rel_tol: float = REL_TOL) -> List[OutputDiff]:
    """Per output: max |out - ref| against :func:`tolerance`; a shape or count
    mismatch is an infinite difference."""
    if len(refs) != len(outs):
        return [OutputDiff('outputs', input_name, float('inf'), float('nan'), 0.0)]
    diffs = []
    for name, ref, out in zip(names, refs, outs):
        ref = np.asarray(ref)
        out = np.asarray(out)
        if ref.shape != out.shape:
            diff = float('inf')
        elif ref.size == 0:
            diff = 0.0
        elif ref.dtype.kind in 'biu':
            diff = float(np.abs(out.astype(np.int64) - ref.astype(np.int64)).max())
        else:
            diff = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max())
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        diffs.append(OutputDiff(name, input_name, diff, scale, tolerance(ref, rel_tol)))
    return diffs


class CheckReport(NamedTuple):
    """Every output on every checked input."""
    diffs: List[OutputDiff]
    warnings: List[str]

    @property
    def ok(self) -> bool:
        return bool(self.diffs) and all(d.ok for d in self.diffs)

    @property
    def worst(self) -> OutputDiff:
        return max(self.diffs, key=lambda d: (not d.ok, d.max_diff / max(d.tol, 1e-30)))

    def summary(self) -> str:
        return '\n'.join(f'  {d}' for d in self.diffs)


# ------------------------------------------------------------ what is exported
def flatten_outputs(out: Any) -> Tuple[Tensor, ...]:
    """Tensors of a (nested) tuple / list / dict output, in order."""
    if isinstance(out, Tensor):
        return (out,)
    if isinstance(out, dict):
        return tuple(t for v in out.values() for t in flatten_outputs(v))
    if isinstance(out, (tuple, list)):
        return tuple(t for v in out for t in flatten_outputs(v))
    raise TypeError(f'cannot export an output of type {type(out).__name__}; the exported '
                    'forward must return tensors.')


def model_task(model: nn.Module) -> str:
    """'segmentation' (an mmseg segmentor), 'classification' (an mmpretrain
    classifier) or 'module' (anything else: its forward is exported as it is)."""
    if hasattr(model, 'encode_decode') and hasattr(model, 'decode_head'):
        return 'segmentation'
    if hasattr(model, 'extract_feat') and hasattr(model, 'head'):
        return 'classification'
    return 'module'


class TensorForward(nn.Module):
    """The tensor path of a model, as a module whose outputs are a flat tuple.

    Classifiers: ``model(x, mode='tensor')``. Segmentors: ``encode_decode`` with
    metainfo fixed to the input size (whole-image inference). Anything else: its
    ``forward``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.task = model_task(model)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if self.task == 'segmentation':
            hw = (int(x.shape[-2]), int(x.shape[-1]))
            metas = [dict(img_shape=hw, pad_shape=hw, ori_shape=hw)
                     for _ in range(int(x.shape[0]))]
            return flatten_outputs(self.model.encode_decode(x, metas))
        if self.task == 'classification':
            return flatten_outputs(self.model(x, mode='tensor'))
        return flatten_outputs(self.model(x))

    def output_names(self, count: int) -> List[str]:
        base = {'segmentation': 'seg_logits', 'classification': 'cls_score'}.get(
            self.task, 'output')
        return [base] if count == 1 else [f'{base}_{i}' for i in range(count)]


# ----------------------------------------------------------- gates and refusals
class DenseGate(TokenGate):
    """A gate whose hard eval decisions are handed to the block as 0/1 floats, so the
    block runs its dense-masked path (every token through the gated part, the update
    multiplied by the mask) instead of the packed one. Same outputs, none of the
    savings: the export form of gates whose packed inference a trace cannot keep."""

    def __init__(self, gate: TokenGate) -> None:
        super().__init__()
        self.gate = gate
        self.slot, self.gates_mlp, self.per_sample = gate.slot, gate.gates_mlp, gate.per_sample

    def forward(self, x: Tensor, ctx):
        decision, ctx = self.gate(x, ctx)
        if decision is not None and decision.hard:
            decision = GateDecision(decision.keep.to(x.dtype), hard=False)
        return decision, ctx


def _gated_blocks(model: nn.Module):
    """(name, block) of every block with a gate."""
    from ...vit import ComposableViT
    for vit_name, vit in model.named_modules():
        if not isinstance(vit, ComposableViT):
            continue
        for i, block in enumerate(vit.blocks):
            if block.mlp_gate is not None or block.attn_gate is not None:
                yield f'{vit_name}.blocks.{i}'.lstrip('.'), block


def refusal_reason(model: nn.Module) -> Optional[str]:
    """Why the packed eval of ``model``'s gates cannot be exported, or None.

    An attention gate's packed eval splits the active rows by per-image counts (a
    Python list) and a per-image gate branches on how many images run the layer: a
    trace freezes both at the traced input's values. An MLP gate's packed eval only
    gathers the active rows (``NonZero`` in the graph) and exports, provided the traced
    input activates some token in every gated layer (:func:`inactive_gate_layers`).
    The dense-masked form (:func:`use_dense_gates`) always exports.
    """
    for name, block in _gated_blocks(model):
        gate = block.attn_gate
        if gate is None or isinstance(gate, DenseGate):
            continue
        kind = 'a per-image layer' if gate.per_sample else 'an attention'
        return (f'{name} has {kind} gate ({type(gate).__name__}) with hard decisions in '
                'eval: its packed inference runs a data-dependent number of tokens or '
                'images, split by per-image counts or chosen by a Python branch, which an '
                "ONNX trace freezes at the traced input's values, so the graph would "
                'compute other images wrongly (onnxruntime fails or differs). Export '
                'refused. Export the dense-masked form instead (pytorch2onnx.py '
                '--dense-gates, or use_dense_gates(model): the same '
                'outputs, every token runs every gated part, so none of the savings), or '
                'deploy this model with PyTorch.')
    return None


@torch.no_grad()
def inactive_gate_layers(model: nn.Module, example: Tensor) -> List[str]:
    """Blocks whose (packed, hard) MLP gate keeps no token of ``example`` at all: a
    trace on it would skip their MLP for every input."""
    decisions = {}
    hooks = [block.mlp_gate.register_forward_hook(
        lambda _m, _i, out, name=name: decisions.__setitem__(name, out[0]))
        for name, block in _gated_blocks(model)
        if block.mlp_gate is not None and not isinstance(block.mlp_gate, DenseGate)]
    try:
        model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return [name for name, d in decisions.items()
            if d is not None and d.hard and not bool(d.keep.any())]


def use_dense_gates(model: nn.Module) -> List[str]:
    """Wrap every gate of ``model`` in :class:`DenseGate` (in place); returns the names
    of the gated blocks."""
    names = []
    for name, block in _gated_blocks(model):
        for slot in ('mlp_gate', 'attn_gate'):
            gate = getattr(block, slot)
            if gate is not None and not isinstance(gate, DenseGate):
                setattr(block, slot, DenseGate(gate))
        names.append(name)
    return names


# ---------------------------------------------------------------- build + fold
def _drop_pretrained(cfg: Any) -> None:
    """Remove ``init_cfg=dict(type='Pretrained', ...)`` everywhere: the checkpoint (or
    random weights, when there is none) gives the weights."""
    if isinstance(cfg, dict):
        init = cfg.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            cfg.pop('init_cfg')
        for value in cfg.values():
            _drop_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _drop_pretrained(value)


class Deployable(NamedTuple):
    model: nn.Module
    cfg: Config
    folded: bool


def deployable_model(cfg: Config, checkpoint: Optional[str] = None,
                     fold: bool = True) -> Deployable:
    """The eval model of ``cfg`` (weights from ``checkpoint``, loaded strictly, or
    random), with LoRA / SPT-LoRA folded when ``fold`` and there is something to fold.

    Folding builds the plain config (``deploy.deploy_config``) and loads the folded state
    into it strictly, so the graph has no LoRA branch.
    """
    from mmengine.runner import load_checkpoint
    cfg = copy.deepcopy(cfg)
    _drop_pretrained(cfg.model)
    model = build_model_from_cfg(cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    else:
        _quiet_init(model)
    model.eval()
    if not fold:
        return Deployable(model, cfg, False)
    try:
        state = folded_model_state(model)
        plain_cfg = deploy_config(cfg, model.backbone)
    except NothingToFoldError:
        return Deployable(model, cfg, False)
    plain = build_model_from_cfg(plain_cfg)
    plain.load_state_dict(state, strict=True)
    return Deployable(plain.eval(), plain_cfg, True)


def _quiet_init(model: nn.Module) -> None:
    """``init_weights`` without mmengine's per-tensor log lines."""
    import logging
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def preprocess_metadata(model: nn.Module) -> Dict[str, str]:
    """What the graph's input must be: the data preprocessor's mean / std / channel
    order (written into the ONNX model's ``metadata_props``)."""
    pre = getattr(model, 'data_preprocessor', None)
    meta = {}
    for key in ('mean', 'std'):
        value = getattr(pre, key, None)
        if isinstance(value, Tensor):
            meta[key] = ','.join(f'{v:g}' for v in value.flatten().tolist())
    for key in ('to_rgb', 'channel_conversion', '_channel_conversion'):
        if hasattr(pre, key):  # mmpretrain's ClsDataPreProcessor, mmseg's SegDataPreProcessor
            meta['bgr_to_rgb'] = str(bool(getattr(pre, key)))
            break
    meta['input'] = 'preprocessed batch (B, 3, H, W): (RGB/BGR image - mean) / std'
    return meta


# -------------------------------------------------------------- export + run
def export_onnx(module: nn.Module, example: Tensor, f: Union[str, io.BytesIO, None] = None,
                opset: int = DEFAULT_OPSET, input_name: str = 'input',
                output_names: Optional[Sequence[str]] = None,
                metadata: Optional[Dict[str, str]] = None) -> Tuple[bytes, List[str]]:
    """Trace ``module`` on ``example`` and return the ONNX model's bytes (also written
    to ``f`` if given) and the exporter's warnings (de-duplicated)."""
    import onnx
    module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter('always')
        torch.onnx.export(module, (example,), buf, opset_version=opset, dynamo=False,
                          input_names=[input_name], output_names=output_names,
                          do_constant_folding=True)
    data = buf.getvalue()
    if metadata:
        proto = onnx.load_from_string(data)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        data = proto.SerializeToString()
    if isinstance(f, str):
        with open(f, 'wb') as out:
            out.write(data)
    elif f is not None:
        f.write(data)
    seen, notes = set(), []
    for w in caught:
        text = str(w.message).split('\n')[0]
        if text not in seen and not issubclass(w.category, DeprecationWarning):
            seen.add(text)
            notes.append(text)
    return data, notes


def ort_session(model: Union[str, bytes], threads: Optional[int] = None):
    """A CPU onnxruntime session (``threads``: intra-op threads, None = its default)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model, sess_options=opts, providers=['CPUExecutionProvider'])


def run_onnxruntime(session, x: Tensor) -> List[np.ndarray]:
    name = session.get_inputs()[0].name
    return session.run(None, {name: x.detach().cpu().numpy()})


def _trace_hint(module: nn.Module, example: Tensor) -> str:
    """Why a merging ViT fails to trace at a size other than its build size."""
    from ...vit import ComposableViT
    for vit in module.modules():
        if isinstance(vit, ComposableViT) and getattr(vit, 'merge_mode', 'none') != 'none' \
                and tuple(example.shape[-2:]) != tuple(vit.img_size):
            return (f' ToMe / PYRA rescale their schedule to the token count at an input '
                    f'size other than the build size {vit.img_size} '
                    '(projects/pyra/schedules.py::layer_merge), and the trace gives that '
                    'count as a tensor, which round() does not take. Export at the build '
                    'size (--shape ' + ' '.join(map(str, vit.img_size)) + ').')
    return ''


@torch.no_grad()
def check_onnx(module: nn.Module, session, inputs: Dict[str, Tensor],
               output_names: Sequence[str], rel_tol: float = REL_TOL,
               notes: Sequence[str] = ()) -> CheckReport:
    """PyTorch's ``module`` against the ONNX ``session`` on every named input."""
    diffs = []
    for input_name, x in inputs.items():
        refs = [t.cpu().numpy() for t in flatten_outputs(module(x))]
        outs = run_onnxruntime(session, x)
        diffs += compare(refs, outs, output_names, input_name, rel_tol)
    return CheckReport(diffs, list(notes))


def export_and_check(module: nn.Module, example: Tensor,
                     check_inputs: Optional[Dict[str, Tensor]] = None,
                     f: Union[str, io.BytesIO, None] = None, opset: int = DEFAULT_OPSET,
                     rel_tol: float = REL_TOL, metadata: Optional[Dict[str, str]] = None,
                     raise_on_mismatch: bool = True, reference: Optional[nn.Module] = None,
                     threads: Optional[int] = None) -> Tuple[bytes, CheckReport]:
    """Export ``module`` (traced on ``example``) and check it with onnxruntime on
    ``example`` and every ``check_inputs`` (default: one more random input of the same
    shape, which the trace has not seen) against ``reference`` (default ``module``; the
    model as PyTorch deploys it when ``module`` is its export form, e.g. dense gates).
    Raises :class:`ExportRefused` for models :func:`refusal_reason` names and
    :class:`ExportMismatch` (with the report) unless every output agrees within the
    tolerance. ``threads``: onnxruntime's intra-op threads (None: its default)."""
    reason = refusal_reason(module)
    if reason:
        raise ExportRefused(reason)
    empty = inactive_gate_layers(module, example)
    if empty:
        raise ExportRefused(
            f'the traced input activates no token in the gated MLP of {", ".join(empty)}: '
            'a trace on it would skip that MLP for every input. Export refused; trace on '
            'another input, or export the dense-masked form (pytorch2onnx.py '
            '--dense-gates, or use_dense_gates(model)).')
    if check_inputs is None:
        gen = torch.Generator().manual_seed(1)
        check_inputs = {'a second random input': torch.randn(example.shape, generator=gen)}
    with torch.no_grad():
        count = len(flatten_outputs(module(example)))
    names = module.output_names(count) if hasattr(module, 'output_names') else \
        [f'output_{i}' if count > 1 else 'output' for i in range(count)]
    try:
        data, notes = export_onnx(module, example, f, opset, output_names=names,
                                  metadata=metadata)
    except TypeError as err:  # Python code that a trace's tensor-valued shapes break
        raise ExportRefused(f'the exporter could not trace this model on '
                            f'{tuple(example.shape)}: {err}.{_trace_hint(module, example)}'
                            ) from err
    session = ort_session(data, threads)
    report = check_onnx(module if reference is None else reference, session,
                        {'the traced input': example, **check_inputs}, names, rel_tol, notes)
    if raise_on_mismatch and not report.ok:
        worst = report.worst
        raise ExportMismatch(
            f'the ONNX graph does not compute what PyTorch computes: {worst}.\n'
            f'{report.summary()}', report)
    return data, report
