#!/usr/bin/env bash
# The GPU check on a machine with an NVIDIA GPU and JAX but no network (bench/gpu_check.py says
# what it does). Wheels of what that machine lacks travel in .whl/ (keras, optree, namex,
# soundfile, cffi, pycparser, soxr, mutagen, sqlalchemy, watchdog for Python 3.12); the seeds,
# the CPU path's answers and a static ffmpeg in DATA (made by `gpu_check.py prepare`).
#   bash bench/gpu_check.sh .gpu [--variants N] [--skip-tests]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bench/gpu_check.sh DATA [options]}
shift
if compgen -G '.whl/*.whl' >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu-check-site .whl/*.whl
  export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import jax, keras, numpy; print("jax", jax.__version__, jax.devices(), "keras", keras.__version__, "numpy", numpy.__version__)'
exec python3 bench/gpu_check.py run "$data" "$@"
