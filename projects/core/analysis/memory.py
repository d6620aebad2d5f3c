"""Process memory for CPU benchmarks, where torch has no allocator statistics.

Why not ``resource.getrusage(...).ru_maxrss``: on Linux a child process inherits its
parent's resident size at fork as its starting ``ru_maxrss``, so a worker spawned by a
benchmark that already holds a large model reports the parent's size, not its own
peak. ``VmHWM`` in ``/proc/self/status`` belongs to the process' own address space, and
writing ``5`` to ``/proc/self/clear_refs`` resets it to the current size, so the peak of
one measured section is ``peak_rss_mb() - rss_mb()`` taken after ``reset_peak_rss()``.
"""


def _status_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}; memory benchmarks need Linux.')


def rss_mb() -> float:
    """Current resident set size (MiB)."""
    return _status_kb('VmRSS') / 1024


def peak_rss_mb() -> float:
    """Peak resident set size of this process since start or the last reset (MiB)."""
    return _status_kb('VmHWM') / 1024


def reset_peak_rss() -> bool:
    """Reset the peak to the current size; False where the kernel does not allow it
    (then the peak counts from process start)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class PeakSection:
    """``with PeakSection() as s: ...`` -- the process' peak during the block:
    ``s.start_mb`` (resident size when entered), ``s.peak_mb`` (high-water mark) and
    ``s.added_mb`` (peak over start: what the block itself needed at its worst).
    ``s.reset`` is False where the kernel refused the reset (then the peak counts from
    process start)."""

    def __enter__(self) -> 'PeakSection':
        self.reset = reset_peak_rss()
        self.start_mb = rss_mb()
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mb = peak_rss_mb()
        self.added_mb = self.peak_mb - self.start_mb
