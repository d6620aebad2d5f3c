"""Searched SPViT architectures: one op and one FFN keep-set per layer, as JSON.

File format (``format: spvit-arch/1``)::

    {"format": "spvit-arch/1", "embed_dims": 384, "num_heads": 6, "mlp_hidden": 1536,
     "layers": [{"op": "conv1x1", "ffn": [0, 3, 4, ...]},     # kept hidden units
                {"op": "msa", "ffn": 1399}, ...]}            # or only how many

A keep count instead of a list (the official searched architectures publish counts)
keeps the k units with the largest |fc1 row| * |fc2 column| at export.
"""
import json
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

from ..core.engine.atomic_io import atomic_json_dump
from ..vit import cost

OPS = ('skip', 'conv1x1', 'conv3x3', 'msa')
#: what a skipped layer adds by default, in the search and the compact model alike: nothing
#: (thesis Eq. 4.16), so the compact model is the network the search scored
DEFAULT_SKIP_OP = 'zero'
FORMAT = 'spvit-arch/1'
FfnSpec = Union[int, List[int]]


@dataclass
class SPViTArch:
    ops: List[str]
    ffn: List[FfnSpec]
    embed_dims: int = 0
    num_heads: int = 0
    mlp_hidden: int = 0
    source: str = '<memory>'
    meta: dict = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.ops)

    def keep_count(self, layer: int) -> int:
        spec = self.ffn[layer]
        return spec if isinstance(spec, int) else len(spec)

    def validate(self, num_layers: Optional[int] = None, mlp_hidden: Optional[int] = None,
                 embed_dims: Optional[int] = None) -> 'SPViTArch':
        """Raise a clear error when this architecture cannot apply to a model."""
        where = f'architecture {self.source}'
        if len(self.ffn) != len(self.ops):
            raise ValueError(f'{where}: {len(self.ops)} ops but {len(self.ffn)} FFN entries.')
        if num_layers is not None and self.num_layers != num_layers:
            raise ValueError(f'{where} lists {self.num_layers} layers but the model has '
                             f'{num_layers}; use an architecture searched on this model.')
        if embed_dims and self.embed_dims and embed_dims != self.embed_dims:
            raise ValueError(f'{where} is for embed_dims={self.embed_dims}, the model has '
                             f'{embed_dims}.')
        hidden = mlp_hidden or self.mlp_hidden
        for i, (op, spec) in enumerate(zip(self.ops, self.ffn)):
            if op not in OPS:
                raise ValueError(f'{where}: layer {i} has unknown op {op!r}; choose from '
                                 f'{OPS}.')
            if isinstance(spec, bool) or not isinstance(spec, (int, list)):
                raise ValueError(f'{where}: layer {i} ffn must be a keep count or a list '
                                 f'of unit indices, got {spec!r}.')
            if isinstance(spec, int):
                if hidden and not 0 <= spec <= hidden:
                    raise ValueError(f'{where}: layer {i} keeps {spec} FFN units, outside '
                                     f'0..{hidden}.')
                continue
            bad = [j for j in spec if not isinstance(j, int) or (hidden and not 0 <= j < hidden)]
            if bad or len(set(spec)) != len(spec):
                shown = bad[:5] or '(duplicates)'
                raise ValueError(f'{where}: layer {i} keeps FFN unit indices {shown} that '
                                 f'are out of range 0..{hidden - 1} or repeated.')
        return self

    def to_json(self) -> dict:
        return dict(format=FORMAT, embed_dims=self.embed_dims, num_heads=self.num_heads,
                    mlp_hidden=self.mlp_hidden, meta=self.meta,
                    layers=[dict(op=op, ffn=spec) for op, spec in zip(self.ops, self.ffn)])

    def save(self, path: str) -> None:
        atomic_json_dump(self.to_json(), path, indent=1)


def load_arch(source: Union[str, dict, SPViTArch]) -> SPViTArch:
    """An architecture from a JSON path, a parsed dict or an ``SPViTArch``."""
    if isinstance(source, SPViTArch):
        return source.validate()
    name = '<dict>'
    if isinstance(source, str):
        name = source
        try:
            with open(source) as f:
                source = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f'SPViT architecture file {name} does not exist; run '
                                    'the search (it writes spvit_arch*.json into its work '
                                    'dir) or use configs/spvit/archs/*.json.') from None
        except json.JSONDecodeError as err:
            raise ValueError(f'SPViT architecture file {name} is not valid JSON: {err}.') \
                from None
    if not isinstance(source, dict) or source.get('format') != FORMAT or \
            not isinstance(source.get('layers'), list):
        raise ValueError(f'{name} is not an SPViT architecture (expected a JSON object with '
                         f'"format": "{FORMAT}" and a "layers" list).')
    layers = source['layers']
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or 'op' not in layer or 'ffn' not in layer:
            raise ValueError(f'{name}: layer {i} needs "op" and "ffn", got {layer!r}.')
    return SPViTArch(ops=[layer['op'] for layer in layers],
                     ffn=[layer['ffn'] for layer in layers],
                     embed_dims=int(source.get('embed_dims', 0)),
                     num_heads=int(source.get('num_heads', 0)),
                     mlp_hidden=int(source.get('mlp_hidden', 0)), source=name,
                     meta=dict(source.get('meta', {}))).validate()


def op_macs(op: str, dim: int, num_heads: int, num_tokens: int, num_prefix: int = 1) -> float:
    """Multiply-adds per image of one attention op on ``num_tokens`` tokens: skip 0,
    the bottleneck convs d -> d/heads -> d on the patches, MSA on all tokens."""
    if op == 'skip':
        return 0.0
    if op == 'msa':
        return cost.msa(num_tokens, dim)
    if op in ('conv1x1', 'conv3x3'):
        return cost.bottleneck_conv(num_tokens - num_prefix, dim, dim // num_heads,
                                    1 if op == 'conv1x1' else 3)
    raise ValueError(f'unknown SPViT op {op!r}; choose from {OPS}.')


def compact_overrides(arch: SPViTArch, skip_op: str = DEFAULT_SKIP_OP, folded: bool = False,
                      alpha: float = 1e-2) -> List[dict]:
    """``block_overrides`` of a ComposableViT that builds ``arch`` physically. The
    default skip op is the search's ('zero'), so the compact model is the network the
    search scored; 'ln' is the official fine-tune model's x + LN(x)."""
    rules = []
    for i, op in enumerate(arch.ops):
        if op == 'msa':
            attn = dict(type='Attention', prop_attn=False)
        elif op == 'skip':
            attn = dict(type='SPViTSkip', skip_op=skip_op)
        else:
            attn = dict(type='SPViTConv', kernel=1 if op == 'conv1x1' else 3,
                        folded=folded, alpha=alpha)
        rules.append(dict(layers=[i], attn_cfg=attn,
                          mlp_cfg=dict(type='Mlp', hidden=arch.keep_count(i))))
    return rules


def op_names(ops: Sequence[int]) -> List[str]:
    return [OPS[o] for o in ops]
