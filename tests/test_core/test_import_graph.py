"""The package layout of issue 20, read from the source with ``ast`` (nothing imported):

- the ViT package (``projects/vit``) imports no method package;
- ``projects/core`` imports no method package;
- no method package imports a sibling method (compositions of two methods live in
  ``projects/combos``).
"""
import ast
import os
import os.path as osp
from typing import Iterator, Set, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PROJECTS = osp.join(ROOT, 'projects')
METHODS = {'dyt', 'esta', 'faseg', 'pyra', 'spt', 'spvit'}


def _module(path: str) -> Tuple[str, str]:
    """(module, package its relative imports resolve against) of a source file."""
    mod = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
    if mod.endswith('.__init__'):
        mod = mod[:-len('.__init__')]
        return mod, mod
    return mod, mod.rsplit('.', 1)[0]


def imports() -> Iterator[Tuple[str, str]]:
    """(importing module, imported module or module.name) for every import under
    ``projects/``."""
    for folder, _, files in os.walk(PROJECTS):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            mod, pkg = _module(path)
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield mod, alias.name
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = pkg.split('.')[:len(pkg.split('.')) - (node.level - 1)]
                        target = '.'.join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ''
                    yield mod, target
                    for alias in node.names:
                        yield mod, f'{target}.{alias.name}'


def _package(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[0] == 'projects' else ''


def edges() -> Set[Tuple[str, str]]:
    """(importing package, imported package) between packages of ``projects``."""
    out = set()
    for src, dst in imports():
        a, b = _package(src), _package(dst)
        if a and b and a != b:
            out.add((a, b))
    return out


def test_the_scan_sees_the_imports():
    # not vacuous: known edges of the layout are found
    found = edges()
    assert {('esta', 'vit'), ('pyra', 'vit'), ('combos', 'spt'), ('combos', 'pyra'),
            ('vit', 'core')} <= found


def test_vit_and_core_import_no_method():
    bad = sorted((a, b) for a, b in edges() if a in ('vit', 'core') and b in METHODS)
    assert not bad, f'the ViT core imports method packages: {bad}'


def test_no_method_imports_a_sibling_method():
    bad = sorted((a, b) for a, b in edges() if a in METHODS and b in METHODS)
    assert not bad, (f'method packages import each other: {bad}; move the shared piece '
                     'to projects/vit or projects/core, or the composition to '
                     'projects/combos')
