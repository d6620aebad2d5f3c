"""A quiet console: mmengine's log lines go to the work dir's log file only, Python
warnings to ``warnings.log`` beside it, and the console gets a progress bar per method.

mmengine binds its console handler to ``sys.stdout`` when a Runner creates its logger,
so the Runner is built with ``sys.stdout`` redirected to a sink, and the handler is then
pointed at stderr with level ERROR: errors still show, the file keeps every line.
"""
import contextlib
import io
import logging
import sys
import warnings
from typing import Iterator

from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from tqdm import tqdm


@contextlib.contextmanager
def quiet_build() -> Iterator[None]:
    """Anything printed to stdout while the Runner is being built is dropped (it is in
    the log file too)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def quiet_logger(logger: MMLogger) -> None:
    """Console handlers of ``logger`` -> stderr, ERROR and above; file handlers keep
    their level."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(sys.stderr)
            handler.setLevel(logging.ERROR)


@contextlib.contextmanager
def warnings_to_file(path: str) -> Iterator[None]:
    """Python warnings (mmengine/torch deprecations and the like) go to ``path``."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
    logger = logging.getLogger('py.warnings')
    logger.addHandler(handler)
    logger.propagate = False
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('default')
            yield
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
        handler.close()


def method_bar(name: str, total: int, disable: bool = False) -> tqdm:
    """One bar per method (training iterations + test iterations)."""
    return tqdm(total=total, desc=f'{name:<14}', unit='it', leave=True, disable=disable,
                dynamic_ncols=True, file=sys.stderr,
                bar_format='{desc} {percentage:3.0f}%|{bar:30}| {n_fmt}/{total_fmt} '
                '[{elapsed}<{remaining}] {postfix}')


class ProgressHook(Hook):
    """Advances a bar per training and test iteration; shows the phase."""
    priority = 'VERY_LOW'

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def before_train(self, runner) -> None:
        self.bar.set_postfix_str('train')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.bar.update(1)

    def before_test(self, runner) -> None:
        self.bar.set_postfix_str('test')

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.bar.update(1)
