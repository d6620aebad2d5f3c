"""The CPU memory probe of the benchmark tools measures the process' own peak.

Each check runs in a fresh interpreter that loads only ``memory.py``: inside the test
process, freed-but-resident heap memory of earlier tests could serve an allocation
without raising the resident size, and importing ``projects`` alone takes ~800 MiB.
"""
import os.path as osp
import subprocess
import sys

import projects.core.analysis.memory as memory

LOAD = ('import importlib.util as u\n'
        's = u.spec_from_file_location("m", {path!r})\n'
        'm = u.module_from_spec(s)\n'
        's.loader.exec_module(m)\n')


def _run(body: str) -> list:
    code = LOAD.format(path=osp.abspath(memory.__file__)) + body
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return [float(v) for v in out.stdout.split()]


def _touch(mib: int) -> str:
    return f'b = bytearray({mib} * 2**20)\nb[::4096] = b"\\x01" * len(b[::4096])\n'


def test_peak_of_a_section_after_reset():
    freed, section = _run(
        _touch(64) + 'del b\n'
        'assert m.reset_peak_rss(), "/proc/self/clear_refs is not writable"\n'
        'base = m.rss_mb()\n'
        'freed = m.peak_rss_mb() - base\n' + _touch(128) +
        'print(freed, m.peak_rss_mb() - base)\n')
    assert freed < 16  # the freed 64 MiB no longer count after the reset
    assert 120 <= section < 200


def test_child_peak_does_not_inherit_the_parent_size():
    # ru_maxrss of a child starts at the parent's size at fork; VmHWM does not
    held = bytearray(300 * 2**20)
    held[::4096] = b'\x01' * len(held[::4096])
    peak, = _run('print(m.peak_rss_mb())')
    assert peak < 150  # python alone; ru_maxrss would say >= 300
    del held
