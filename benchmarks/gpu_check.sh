#!/bin/sh
# The device check of issue 37 in one command (docs/gpu.md): on a machine with JAX but no Keras, install the kit's
# wheels (`make gpu-kit`: Keras, namex, optree; Set12 in .kit/set12) into a scratch folder, then run
# benchmarks/gpu_check.py on Keras 3 over JAX. At most 8 minutes on an H200; also runs on the CPU first:
#   sh benchmarks/gpu_check.sh --device cpu --quick
# Usage, from the repository root: sh benchmarks/gpu_check.sh [--device gpu|cpu] [--quick] [gpu_check.py options]
set -eu
kit=${KIT:-.kit}
site=${TMPDIR:-/tmp}/denoise-site
export KERAS_BACKEND=jax
if python3 -c "import keras" 2>/dev/null; then
    echo "keras is installed here; the kit's wheels are not needed"
elif ls "$kit"/*.whl >/dev/null 2>&1; then
    python3 -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target "$site" "$kit"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no Keras here and no wheels in $kit: run make gpu-kit and carry $kit" >&2
    exit 2
fi
# Run from the checkout, not installed: the shipped models are the package denoiser.models only once installed.
[ -e denoiser/models ] || ln -s ../models denoiser/models
# A device copy may leave models/*.keras out for size and carry them without int8 graphs (make gpu-kit).
for model in "$kit"/models/*.keras; do
    if [ -e "$model" ] && [ ! -e "models/${model##*/}" ]; then cp "$model" models/; fi
done
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
case " $* " in *" --device cpu "*) export JAX_PLATFORMS=cpu ;; esac
exec python3 benchmarks/gpu_check.py "$@"
