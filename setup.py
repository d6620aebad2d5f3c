"""MMAdapt: efficient adaptation of vision transformers for OpenMMLab.

The runtime stack (torch, mmcv built with ops, mmseg/mmdet/mmpretrain) is pinned in
``requirements/*.txt`` and installed by ``tools/setup_env.sh``; mmcv 2.1.0 must be built
against the installed torch, which a plain ``install_requires`` cannot express.
"""
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name: str) -> list:
    lines = (Path(__file__).parent / 'requirements' / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith('#')]


setup(
    name='mmadapt',
    version='0.1.0',
    description='Token merging, PEFT and efficient decode heads for OpenMMLab ViTs',
    python_requires='>=3.10',
    packages=find_packages(include=['projects', 'projects.*']),
    install_requires=[],  # see tools/setup_env.sh: mmcv must be compiled for the local torch
    extras_require={
        'runtime': read_requirements('runtime.txt'),
        'tests': read_requirements('tests.txt'),
    },
    license='Apache-2.0',
)
