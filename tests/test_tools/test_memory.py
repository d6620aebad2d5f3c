"""The CPU memory probe of the benchmark tools measures the process' own peak."""
import os.path as osp
import subprocess
import sys

import projects.core.memory as memory
from projects.core.memory import peak_rss_mb, reset_peak_rss, rss_mb

# the child loads only memory.py (importing `projects` would itself take ~800 MiB)
PROBE = ('import importlib.util as u; s = u.spec_from_file_location("m", {path!r}); '
         'm = u.module_from_spec(s); s.loader.exec_module(m); print(m.peak_rss_mb())')


def test_peak_of_a_section_after_reset():
    held = bytearray(64 * 2**20)  # touched below so it is resident
    held[::4096] = b'\x01' * len(held[::4096])
    del held
    assert reset_peak_rss(), '/proc/self/clear_refs not writable: peaks count from start'
    base = rss_mb()
    assert peak_rss_mb() - base < 16  # the freed 64 MiB no longer count
    block = bytearray(128 * 2**20)
    block[::4096] = b'\x01' * len(block[::4096])
    assert 120 <= peak_rss_mb() - base < 200
    del block


def test_child_peak_does_not_inherit_the_parent_size():
    # ru_maxrss of a child starts at the parent's size at fork; VmHWM does not
    held = bytearray(300 * 2**20)
    held[::4096] = b'\x01' * len(held[::4096])
    probe = PROBE.format(path=osp.abspath(memory.__file__))
    out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert float(out[0]) < 150, out  # python alone; ru_maxrss would say >= 300
    del held
