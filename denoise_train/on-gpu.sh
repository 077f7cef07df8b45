#!/bin/sh
# Train on a GPU machine that has JAX but neither TensorFlow nor Keras, from a kit made by `make gpu-kit`:
# its Keras wheels go into a scratch folder and `python -m denoise_train` runs from this checkout on the JAX backend.
# Usage, from the repository root: sh denoise_train/on-gpu.sh KIT [python -m denoise_train options, e.g. --data KIT/train400]
set -eu
kit=$1
shift
site=${TMPDIR:-/tmp}/denoise-site
python3 -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target "$site" "$kit"/*.whl
PYTHONPATH="$site:$(pwd)" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 exec python3 -m denoise_train "$@"
