"""Shared fixtures: tiny ViT configs that run in milliseconds on 2 CPU cores, and the
subprocess runner of the tests that run tools as a user would."""
import copy
import os
import os.path as osp
import socket
import subprocess

import pytest
import torch

import projects  # noqa: F401  (registers components, applies compat fixes)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _cache_external_config_index() -> None:
    """mmengine re-reads the ~100 model-index YAML files of mmseg / mmpretrain for every
    ``mmseg::`` / ``mmpretrain::`` base of every config it parses (about 0.3 s each;
    a base that is no model config, such as a dataset base, is looked up and missed
    every time), and the suite parses each config several times. The installed files
    do not change during a run: here the index of a package is read once per process."""
    from mmengine.config import utils
    from mmengine.fileio import load
    indexes: dict = {}

    def index(package_path: str) -> dict:
        if package_path not in indexes:
            found: dict = {}
            mim = osp.join(package_path, '.mim')
            for meta in load(osp.join(mim, 'model-index.yml'))['Import']:
                for model in load(osp.join(mim, meta))['Models']:
                    if 'Config' in model:  # the first entry of a config name wins
                        found.setdefault(model['Config'].partition('/')[-1], model)
            indexes[package_path] = found
        return indexes[package_path]

    def cached(package_path: str, cfg_path: str) -> dict:
        found = index(package_path)
        if cfg_path not in found:
            raise ValueError(f'Expected configs: {found.keys()}, but got {cfg_path}')
        return copy.deepcopy(found[cfg_path])

    utils._get_cfg_metainfo = cached


_cache_external_config_index()
TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread for the test: one reduction order whatever the machine (the
    reference comparisons), and tiny models run fastest so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SubprocessTools:
    """Start tools in subprocesses with the repo (and ``paths``, e.g. a folder of test
    hooks named in ``custom_imports``) on PYTHONPATH and one thread each: identical
    arithmetic in every compared run, and runs can share the two cores."""

    def __init__(self, paths=()) -> None:
        self.paths = tuple(paths)

    def with_paths(self, *paths: str) -> 'SubprocessTools':
        return SubprocessTools(self.paths + paths)

    def tool_env(self, **extra) -> dict:
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [*self.paths, REPO_ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
        env['OMP_NUM_THREADS'] = '1'
        env.update(extra)
        return env

    def start(self, cmd, cwd, **env) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=cwd, env=self.tool_env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f'{proc.args} timed out; output:\n{out[-4000:]}')
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)

    def run(self, cmd, cwd, timeout: float = 300, **env) -> subprocess.CompletedProcess:
        return self.finish(self.start(cmd, cwd, **env), timeout)

    @staticmethod
    def check(result: subprocess.CompletedProcess, code: int = 0) -> str:
        assert result.returncode == code, (
            f'{" ".join(result.args)} exited {result.returncode} (expected {code}):\n'
            f'{result.stdout[-6000:]}')
        return result.stdout

    @staticmethod
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            return s.getsockname()[1]


@pytest.fixture(scope='session')
def subprocess_tools() -> SubprocessTools:
    """Test modules cannot import conftest in importlib mode; they get it here."""
    return SubprocessTools()
