"""One JSON schema and one table printer for every ``tools/analysis`` script.

Every tool writes the same header, so a script that reads benchmark results (the README
tables, the snapshot tests) reads any tool's file the same way::

    {"schema": "mmadapt-analysis", "version": 1, "tool": "benchmark",
     "config": ..., "device": "cpu", "threads": 2, "batch": 32, "dtype": "float32",
     "images": "real", "rows": [{...}, ...], ...tool-specific keys...}

``rows`` holds one dict per printed table row; keys a tool wrote before the schema
existed stay where they were (next to the header), so old readers keep working.
``None`` in a header field means "does not apply to this tool" (a picture tool has no
batch).
"""
import json
import math
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..engine.atomic_io import atomic_write_text

SCHEMA = 'mmadapt-analysis'
VERSION = 1
HEADER = ('schema', 'version', 'tool', 'config', 'device', 'threads', 'batch', 'dtype',
          'images', 'rows')

#: a table column: (row key, header, format spec or a function of the value)
Column = Tuple[str, str, Union[str, Callable[[Any], str]]]


def make_report(tool: str, rows: List[dict], config: Union[None, str, Sequence[str]] = None,
                device: Optional[str] = 'cpu', batch: Optional[int] = None,
                dtype: Optional[str] = 'float32', images: Optional[str] = None,
                **extra: Any) -> Dict[str, Any]:
    """The report of one tool run; ``extra`` keys follow the header."""
    clash = set(extra) & set(HEADER)
    if clash:
        raise ValueError(f'{tool}: report keys {sorted(clash)} are header fields; pass them '
                         'as arguments.')
    report = dict(schema=SCHEMA, version=VERSION, tool=tool,
                  config=list(config) if isinstance(config, (list, tuple)) else config,
                  device=device, threads=torch.get_num_threads(), batch=batch, dtype=dtype,
                  images=images, rows=rows)
    report.update(extra)
    return report


def check_report(report: Dict[str, Any]) -> None:
    """Refuse a file that is not a report of this schema version, naming what is off."""
    if report.get('schema') != SCHEMA:
        raise ValueError(f"not an analysis report: schema is {report.get('schema')!r}, "
                         f'expected {SCHEMA!r}.')
    if report.get('version') != VERSION:
        raise ValueError(f"analysis report version {report.get('version')!r}; this code "
                         f'reads version {VERSION}.')
    missing = [k for k in HEADER if k not in report]
    if missing:
        raise ValueError(f'analysis report lacks the header fields {missing}.')


def _plain(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (JSON has no NaN), tuples lists, tensors numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(report: Dict[str, Any], path: Optional[str]) -> None:
    """Write ``report`` as JSON to ``path`` (atomically; nothing when ``path`` is None)."""
    if not path:
        return
    check_report(report)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    atomic_write_text(path, json.dumps(_plain(report), indent=1) + '\n')


def _cell(value: Any, fmt: Union[str, Callable[[Any], str]]) -> str:
    if callable(fmt):
        return fmt(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-' if value is None else 'n/a'
    return format(value, fmt)


def format_table(rows: Sequence[dict], columns: Sequence[Column],
                 title: Optional[str] = None) -> str:
    """Rows as a text table: the first column left-aligned, the others right-aligned,
    each as wide as its widest cell; a row without a key shows '-'."""
    cells = [[_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    heads = [head for _, head, _ in columns]
    widths = [max([len(heads[i])] + [len(c[i]) for c in cells]) for i in range(len(heads))]

    def line(values: Sequence[str]) -> str:
        return ' '.join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = ([title] if title else []) + [line(heads)] + [line(c) for c in cells]
    return '\n'.join(out)


def print_table(rows: Sequence[dict], columns: Sequence[Column],
                title: Optional[str] = None) -> None:
    print(format_table(rows, columns, title), flush=True)


def ratio(fmt: str = '.2f') -> Callable[[Any], str]:
    """Cell format of a ratio: ``1.23x``."""
    return lambda v: '-' if v is None else ('n/a' if v != v else f'{v:{fmt}}x')


def percent(fmt: str = '.1f') -> Callable[[Any], str]:
    """Cell format of a fraction shown as a percentage: ``0.5`` -> ``50.0%``."""
    return lambda v: '-' if v is None else ('n/a' if v != v else f'{100 * v:{fmt}}%')
