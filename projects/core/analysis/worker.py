"""Run one measurement in a fresh child process and read back its JSON result.

Peak memory is only meaningful per process (``memory.py``: ``VmHWM`` of the process'
own address space), so every memory measurement runs alone in a child that imports
what it needs, builds its model, measures, and prints one ``RESULT`` line. ``inline``
runs the same function in this process instead: the numbers then include whatever the
caller already held (for tests and quick looks, never for a table).

A target is ``'package.module:function'`` or ``'path/to/file.py:function'`` (a tool
script's own worker); the function takes JSON-able keyword arguments and returns a
JSON-able dict.
"""
import importlib
import importlib.util
import json
import os.path as osp
import subprocess
import sys
from typing import Any, Callable, Dict, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
RESULT = 'ANALYSIS-RESULT '


def resolve(target: str) -> Callable[..., Dict[str, Any]]:
    """The function a target names, with an error saying which part is wrong."""
    where, sep, name = target.rpartition(':')
    if not sep or not where or not name:
        raise ValueError(f"worker target {target!r}: write 'package.module:function' or "
                         "'path/to/file.py:function'.")
    if where.endswith('.py'):
        path = where if osp.isabs(where) else osp.join(ROOT, where)
        if not osp.isfile(path):
            raise ValueError(f'worker target {target!r}: no file {path}.')
        spec = importlib.util.spec_from_file_location(
            '_analysis_worker_' + osp.splitext(osp.basename(path))[0], path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f'worker target {target!r}: {where} has no function {name!r}.')
    return fn


def run_in_child(target: str, kwargs: Dict[str, Any], inline: bool = False,
                 timeout: Optional[float] = None) -> Dict[str, Any]:
    """``target(**kwargs)`` in a fresh interpreter (or here when ``inline``)."""
    if inline:
        return resolve(target)(**kwargs)
    # run as a file, not with -m: the child imports only what the target needs
    cmd = [sys.executable, osp.abspath(__file__), target, json.dumps(kwargs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode or not lines:
        raise RuntimeError(f'measurement {target} failed in its child process (exit '
                           f'{proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}')
    return json.loads(lines[-1][len(RESULT):])


def main(argv=None) -> None:
    here = osp.dirname(osp.abspath(__file__))  # run as a file: its folder is on the path,
    sys.path[:] = [p for p in sys.path if osp.abspath(p or '.') != here]  # shadowing names
    if ROOT not in sys.path:  # module targets ('projects.x:f') import from the checkout
        sys.path.insert(0, ROOT)
    target, kwargs = (sys.argv[1:] if argv is None else argv)
    result = resolve(target)(**json.loads(kwargs))
    print(RESULT + json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
