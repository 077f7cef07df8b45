# The two commands of the README: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install models clean

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
	$(BIN)/python -m pytest -q

# Retrain the shipped default models (about 25 min each on 2 CPU cores); DATA holds train400/ and cbsd432/.
DATA ?= ../shared/data
models: $(STAMP)
	$(BIN)/python -m train --data $(DATA)/train400 --out models/gray.keras --channels 1 --depth 8 --width 32 \
		--epochs 20 --steps 100 --batch-size 32 --patch 48 --lr 2e-3
	$(BIN)/python -m train --data $(DATA)/cbsd432 --out models/color.keras --channels 3 --depth 8 --width 32 \
		--epochs 20 --steps 100 --batch-size 32 --patch 48 --lr 2e-3

clean:
	rm -rf $(VENV) demo build *.egg-info
