"""Progress bars of the long loops of the analysis tools: on stderr, so the tables on
stdout stay clean, and only on a terminal (logs and tests get no bar noise)."""
import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar('T')


def progress(items: Iterable[T], desc: str, total: Optional[int] = None) -> Iterable[T]:
    from tqdm import tqdm
    return tqdm(items, desc=desc, total=total, leave=False, file=sys.stderr,
                disable=not sys.stderr.isatty())
