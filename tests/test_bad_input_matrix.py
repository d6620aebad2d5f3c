"""The README's "Bad input" table stays true to the test suite: at least 25 distinct
kinds across every area, and every test a row names exists (collected by pytest in a
subprocess, so parametrize ids are pytest's own). What each row claims is proven by
the named tests themselves."""
import os.path as osp
import re
import subprocess
import sys
from typing import Dict, List, NamedTuple, Set

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SECTION = '## Bad input'
AREAS = {'PYRA/ToMe', 'LoRA', 'SPT', 'FASeg', 'DyT', 'block configs', 'checkpoints',
         'tools', 'datasets', 'SPViT', 'ESTA'}
MIN_ROWS = 25


class Row(NamedTuple):
    area: str
    kind: str
    outcome: str
    tests: List[str]


def section_text(readme: str) -> str:
    """The lines from ``## Bad input`` to the next level-2 heading."""
    start = readme.find('\n' + SECTION + '\n')
    assert start >= 0, f'README.md has no "{SECTION}" section'
    body = readme[start + len(SECTION) + 2:]
    end = body.find('\n## ')
    return body if end < 0 else body[:end]


def parse_rows(text: str) -> List[Row]:
    """Rows of the section's table: area | bad input | what happens | test node ids."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith('|')]
    assert len(lines) > 2, 'the Bad input section has no table'
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    assert header == ['area', 'bad input', 'what happens', 'test'], header
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert len(cells) == 4, f'a row needs 4 cells: {line}'
        rows.append(Row(cells[0], cells[1], cells[2], re.findall(r'`([^`]+::[^`]+)`', cells[3])))
    return rows


def collect(files: Set[str]) -> Set[str]:
    """Node ids pytest collects from ``files`` (as ``pytest --collect-only -q``)."""
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider',
         *sorted(files)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    ids = {ln.strip() for ln in proc.stdout.splitlines() if '::' in ln}
    assert ids, f'pytest collected nothing:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return ids


def exists(node: str, collected: Set[str]) -> bool:
    """A collected id, or a test function whose parametrized ids are collected."""
    return node in collected or any(c.startswith(node + '[') for c in collected)


@pytest.fixture(scope='module')
def rows() -> List[Row]:
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        return parse_rows(section_text(f.read()))


def test_table_has_enough_distinct_kinds_in_every_area(rows):
    assert len(rows) >= MIN_ROWS, f'{len(rows)} rows, at least {MIN_ROWS} wanted'
    kinds: Dict[str, int] = {}
    for row in rows:
        kinds[row.kind.lower()] = kinds.get(row.kind.lower(), 0) + 1
    assert not [k for k, n in kinds.items() if n > 1], 'kinds listed twice'
    assert {r.area for r in rows} == AREAS
    for row in rows:
        assert row.kind and row.outcome, f'empty cell in {row}'
        assert row.tests, f'no test node id for {row.kind!r}'


def test_every_named_test_exists(rows):
    named = {node for row in rows for node in row.tests}
    files = {node.split('::')[0] for node in named}
    missing_files = sorted(f for f in files if not osp.isfile(osp.join(ROOT, f)))
    assert not missing_files, f'test files named in the table do not exist: {missing_files}'
    assert osp.basename(__file__) not in {osp.basename(f) for f in files}
    collected = collect(files)
    missing = sorted(n for n in named if not exists(n, collected))
    assert not missing, 'tests named in README "Bad input" are not collected:\n' + \
        '\n'.join(missing)


def test_parser_and_existence_check_can_fail():
    """The checks above reject what they should (a table they could not read, an id
    that is not collected), so passing them means something."""
    text = ('\n## Bad input\n\n| area | bad input | what happens | test |\n|---|---|---|---|\n'
            '| LoRA | x | refused | `tests/a.py::test_b[c-d]` |\n\n## Next\n| not | this |\n')
    rows = parse_rows(section_text(text))
    assert rows == [Row('LoRA', 'x', 'refused', ['tests/a.py::test_b[c-d]'])]
    collected = {'tests/a.py::test_b[c-d]', 'tests/a.py::test_e'}
    assert exists('tests/a.py::test_b', collected) and exists('tests/a.py::test_e', collected)
    assert not exists('tests/a.py::test_b[c]', collected)
    assert not exists('tests/a.py::test_f', collected)
    with pytest.raises(AssertionError, match='no "## Bad input" section'):
        section_text('# README\n## Other\n')
