# Two commands for a fresh machine:
#   make demo   install, generate an offline synthetic sky, train, report
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_GALAXIES ?= 600
DEMO_DATA := data
DEMO_OUT := results/demo

.PHONY: demo demo-seed demo-data test install clean-data gz1 learning-curve

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# the modern preset keeps its best epoch, so the demo's score does not hinge on the last one
demo: demo-data
	$(BIN)/python quick_cnn_trainer.py --preset modern --data $(DEMO_DATA) --out $(DEMO_OUT) --seed 0

# the seed recipe (bare `python quick_cnn_trainer.py`) on the same data, downsampled to 128 px
demo-seed: demo-data
	$(BIN)/python quick_cnn_trainer.py --data $(DEMO_DATA) --out results/demo-seed --image-size 128 --seed 0

demo-data: $(STAMP)
	@if [ -f $(DEMO_DATA)/galaxy_images.npy ]; then \
	  echo "using the data set already in $(DEMO_DATA)/ (delete it to generate a new one)"; \
	else \
	  $(BIN)/python sdss_query.py --synthetic --n-galaxies $(DEMO_GALAXIES) --out $(DEMO_DATA); \
	fi

# two workers (one per core here): most of the suite's time is single-threaded TensorFlow start-up and
# graph tracing, so the second core halves the wall time; more workers would only add memory
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 2 --dist worksteal tests

clean-data:
	rm -rf $(DEMO_DATA)/galaxy_data.csv $(DEMO_DATA)/galaxy_images.npy $(DEMO_DATA)/galaxy_labels.npy $(DEMO_DATA)/cutouts

# Real SDSS galaxies (../shared/data/gz1): train --preset modern, judge it on the
# fixed held-out set bench/gz1_holdout.csv, ship models/sdss-gz1.keras (+ .json)
gz1: $(STAMP)
	$(BIN)/python bench/bench_gz1.py --install-model

# the same, plus held-out accuracy after 250, 500, 1000, 2000 and all training galaxies
learning-curve: $(STAMP)
	$(BIN)/python bench/bench_gz1.py --learning-curve
