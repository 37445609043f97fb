# Two commands for a fresh machine:
#   make demo   install, generate an offline synthetic sky, train, report
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_GALAXIES ?= 400
DEMO_DATA := data
DEMO_OUT := results/demo

.PHONY: demo test install bench clean-data

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	@if [ -f $(DEMO_DATA)/galaxy_images.npy ]; then \
	  echo "using the data set already in $(DEMO_DATA)/ (delete it to generate a new one)"; \
	else \
	  $(BIN)/python sdss_query.py --synthetic --n-galaxies $(DEMO_GALAXIES) --out $(DEMO_DATA); \
	fi
	$(BIN)/python quick_cnn_trainer.py --data $(DEMO_DATA) --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean-data:
	rm -rf $(DEMO_DATA)/galaxy_data.csv $(DEMO_DATA)/galaxy_images.npy $(DEMO_DATA)/galaxy_labels.npy $(DEMO_DATA)/cutouts
