# The two commands of the README: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install models fast int8 watermark scorer gpu-kit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	rm -rf demo
	$(BIN)/python examples/make_noisy.py examples/clean demo/noisy
	$(BIN)/denoise batch demo/noisy demo/clean --preview demo/before-after.png
	@echo
	@echo "Cleaned images and scores.jsonl: demo/clean/   before/after sheet: demo/before-after.png"

test: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# Retrain the shipped default models on 2 CPU cores: 64-px patches from scratch (about 17 min), then 128-px
# patches from the last weights (40 min), then lower learning rates: gray three times more with the colour
# images added as gray (50 min, then 80 and 105 min timed with a weight average and sigma up to 55), colour
# twice (25 and 15 min, the last with a new seed). DATA holds train400/ and cbsd432/.
DATA ?= ../shared/data
TRAIN := $(BIN)/python -m denoise_train --preset unet --width 32 --levels 4 --epochs 25 --steps 250 --batch-size 32 --patch 64 --lr 1e-3
TUNE := $(BIN)/python -m denoise_train --preset unet --width 32 --levels 4 --steps 250 --batch-size 8 --patch 128
SCORER := $(BIN)/python -m denoise_train scorer --preset photo --crops 4 --neighbours 5
models: $(STAMP)
	$(TRAIN) --data $(DATA)/train400 --out models/gray.keras --channels 1 --checkpoint-dir runs/gray
	$(TUNE) --epochs 60 --lr 3e-4 --init models/gray.keras --data $(DATA)/train400 --out models/gray.keras --channels 1 --sp-prob 0.1 --checkpoint-dir runs/gray-ft
	$(TUNE) --epochs 75 --lr 2e-4 --init models/gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/gray.keras --channels 1 --sp-prob 0.1 --checkpoint-dir runs/gray-ft3
	$(TUNE) --minutes 80 --lr 1e-4 --ema 0.999 --sigma-max 55 --seed 6 --workers 2 --init models/gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/gray.keras --channels 1 --sp-prob 0.1 --checkpoint-dir runs/gray-ema
	$(TUNE) --minutes 105 --lr 7e-5 --ema 0.999 --sigma-max 55 --seed 7 --workers 2 --init models/gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/gray.keras --channels 1 --sp-prob 0.1 --checkpoint-dir runs/gray-ema2
	$(TRAIN) --data $(DATA)/cbsd432 --out models/color.keras --channels 3 --checkpoint-dir runs/color
	$(TUNE) --epochs 60 --lr 3e-4 --init models/color.keras --data $(DATA)/cbsd432 --out models/color.keras --channels 3 --checkpoint-dir runs/color-ft
	$(TUNE) --epochs 35 --lr 1e-4 --init models/color.keras --data $(DATA)/cbsd432 --out models/color.keras --channels 3 --checkpoint-dir runs/color-ft3
	$(TUNE) --epochs 22 --lr 1e-4 --seed 4 --init models/color.keras --data $(DATA)/cbsd432 --out models/color.keras --channels 3 --checkpoint-dir runs/color-ft4
	$(MAKE) fast
	$(MAKE) watermark
	$(MAKE) scorer
	$(MAKE) int8

# Retrain only the shipped fast gray model (65 + 30 min timed): the U-Net at half resolution, its body started from
# gray's, then a pass with static in 30% of the patches, which the first pass had not learned.
FAST := $(BIN)/python -m denoise_train --preset unet-half --width 32 --levels 4 --data $(DATA)/train400 --data $(DATA)/cbsd432 --channels 1 --patch 128 --batch-size 16 --steps 100 --ema 0.999 --sigma-max 55 --workers 2 --out models/gray-fast.keras
fast: $(STAMP)
	$(FAST) --init models/gray.keras --minutes 65 --lr 5e-4 --sp-prob 0.1 --seed 11 --checkpoint-dir runs/gray-fast
	$(FAST) --init models/gray-fast.keras --minutes 30 --lr 2e-4 --sp-prob 0.3 --seed 12 --checkpoint-dir runs/gray-fast2
	$(QUANTIZE) models/gray-fast.keras --data $(DATA)/train400 --data $(DATA)/cbsd432

# Only the int8 graphs of the shipped gray and colour models (`--precision int8`; about a minute each), calibrated
# on noisy tiles of each model's own training images. `fast` and `watermark` make their models' own.
QUANTIZE := $(BIN)/python -m denoise_train quantize
int8: $(STAMP)
	$(QUANTIZE) models/gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432
	$(QUANTIZE) models/color.keras --data $(DATA)/cbsd432

# Retrain only the shipped watermark remover (about 60 + 37 + 50 + 45 + 48 + 55 + 25 + 25 + 60 + 60 + 26 + 75 + 65 min): the
# matte preset, its U-Net body taken from the gray model (the shipped one started from gray before its two timed
# passes), trained on watermarks alone in thirteen passes, each with a new seed (the last eight timed, with a moving average
# of the weights; the last six weigh the opacity map's cross-entropy 0.01 instead of 0.1, closer to the pixels' PSNR).
# The tenth grows the net: four more residual blocks at its lowest scale (--bottom 6, starting as the identity),
# trained on 256-px patches, two a batch, so that the wider view has whole patches to see; the eleventh goes on;
# the twelfth grows it again, to ten (--bottom 10); the thirteenth goes on at a lower rate. Then its int8 graph.
MATTE := $(BIN)/python -m denoise_train --preset matte --width 32 --levels 4 --steps 250 --batch-size 8 --patch 128 --task watermark --channels 1 --workers 2
watermark: $(STAMP)
	$(MATTE) --epochs 32 --lr 5e-4 --seed 7 --init models/gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte
	$(MATTE) --epochs 20 --lr 2e-4 --seed 8 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte2
	$(MATTE) --epochs 24 --lr 1.5e-4 --seed 9 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte3
	$(MATTE) --epochs 24 --lr 1e-4 --seed 10 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte4
	$(MATTE) --epochs 24 --lr 1e-4 --seed 11 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte5
	$(MATTE) --minutes 55 --lr 1e-4 --ema 0.999 --seed 12 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte6
	$(MATTE) --minutes 25 --lr 7e-5 --ema 0.999 --seed 13 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte7
	$(MATTE) --minutes 25 --lr 7e-5 --ema 0.999 --seed 14 --matte-weight 0.01 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte8
	$(MATTE) --minutes 60 --lr 1e-4 --ema 0.999 --seed 15 --matte-weight 0.01 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte9
	$(MATTE) --minutes 60 --lr 1e-4 --ema 0.999 --seed 18 --matte-weight 0.01 --bottom 6 --patch 256 --batch-size 2 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte10
	$(MATTE) --minutes 26 --lr 7e-5 --ema 0.999 --seed 19 --matte-weight 0.01 --bottom 6 --patch 256 --batch-size 2 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte11
	$(MATTE) --minutes 75 --lr 1e-4 --ema 0.999 --seed 20 --matte-weight 0.01 --bottom 10 --patch 256 --batch-size 2 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte12
	$(MATTE) --minutes 65 --lr 7e-5 --ema 0.999 --seed 21 --matte-weight 0.01 --bottom 10 --patch 256 --batch-size 2 --init models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/watermark-gray.keras --checkpoint-dir runs/wm-matte13
	$(QUANTIZE) models/watermark-gray.keras --data $(DATA)/train400 --data $(DATA)/cbsd432

# Retrain only the shipped anomaly scorer (about 2 hours, most of it the damage network): statistics of natural
# photos from both training sets and synthetic damage painted on them, clean and noisy; the damage network is then
# trained further twice, the second time with damaged pixels weighted 10 times, and the statistics fitted again each
# time. Every 5th file of each folder is left out for benchmarks/anomaly_benchmark.py --split validation.
scorer: $(STAMP)
	$(SCORER) --damage-steps 6000 --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/scorer.keras
	$(SCORER) --damage-from models/scorer.keras --damage-steps 4000 --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/scorer.keras
	$(SCORER) --damage-from models/scorer.keras --damage-steps 16000 --damage-positive-weight 10 --workers 2 --data $(DATA)/train400 --data $(DATA)/cbsd432 --out models/scorer.keras

# What a GPU machine with JAX but no TensorFlow needs to train (denoise_train/on-gpu.sh runs it there): the wheels of
# this Keras and of the two Keras needs that such machines lack, for KIT_PYTHON, and the train400 and Set12 images
# (benchmarks/gpu_check.sh reads .kit/set12), and copies of the models it times without their CPU-only int8 graphs
# (54 MB instead of 74: what fits a device copy limited to 64 MiB, with models/*.keras left out of it).
KIT ?= .kit
KIT_PYTHON ?= 3.12
gpu-kit: $(STAMP)
	rm -rf $(KIT) && mkdir -p $(KIT)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version $(KIT_PYTHON) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $(KIT) \
		keras==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("keras"))') namex optree
	cp -r $(DATA)/train400 $(KIT)/train400 && cp -r $(DATA)/cbsd432 $(KIT)/cbsd432 && cp -r $(DATA)/set12 $(KIT)/set12
	chmod -R u+w $(KIT)
	$(BIN)/python benchmarks/strip_int8.py $(KIT)/models models/gray.keras models/color.keras \
		models/watermark-gray.keras models/scorer.keras

clean:
	rm -rf $(VENV) demo build *.egg-info
