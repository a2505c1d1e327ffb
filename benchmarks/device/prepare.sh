#!/usr/bin/env bash
# Gathers, here (where PyPI is reachable), what a lent GPU machine lacks for gpu_check.sh: it has torch,
# transformers, safetensors, accelerate, peft, numpy, pyyaml, pluggy, click and tqdm, but no mergekit or pydantic,
# and it reaches no registry. Writes .device/ (git-ignored, about 57 MB): wheels for its Python and the tiny world.
#
#   bash benchmarks/device/prepare.sh            # then, from the session, the device tool's run:
#   run(command="bash benchmarks/device/gpu_check.sh", carry=[".device"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}   # the GPU image's python3 (3.12.3 when last seen)

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }

rm -rf .device
mkdir -p .device/wheels .device/cache/tiny-world
# The same versions as this checkout's venv, so the GPU runs what the tests here ran.
wanted=()
for pkg in mergekit pydantic pydantic-core annotated-types typing-inspection immutables; do
  wanted+=("$pkg==$(version "$pkg")")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: -d .device/wheels \
  --python-version "$DEVICE_PYTHON" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "${wanted[@]}"
# The tiny world is built here on the CPU (its training is what the tests' expectations were measured on).
world=$("$PY" -c 'from mergekit_evo.demo.tiny_world import ensure_world; print(ensure_world(log=lambda _: None))')
cp -r "$world" .device/cache/tiny-world/
du -sh .device/wheels .device/cache
