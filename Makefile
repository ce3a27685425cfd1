# trustml: two commands, `make demo` and `make test`, on a machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.trustml-installed
# The CPU build of torch. Where no local wheel is cached, pip falls back to PyTorch's CPU index,
# so a CUDA build is never downloaded.
TORCH_SPEC  ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test bench lint clean examples campaign

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)" \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --index-url $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	# Tests only: batchbald_redux, the reference BatchBALD that tests/acquire checks against.
	# --no-deps: its metadata asks for torchvision, which would replace the CPU torch; the
	# module used imports only torch, toma and tqdm.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "batchbald-redux==2.0.5" "toma==1.1.0"
	# tm.Laplace: laplace-torch and the rest of what it imports, pinned. --no-deps: its metadata
	# (and backpack's) asks for torchvision, which would replace the CPU torch and which it never
	# imports; torch, numpy, scipy, tqdm and packaging come from trustml's own requirements.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "laplace-torch==0.3" \
	  "asdfghjkl==0.1a4" "backpack-for-pytorch==1.7.1" "curvlinops-for-pytorch==3.0.1" "einops==0.8.2" \
	  "unfoldNd==0.2.3" "einconv==0.1.0" "linear_operator==0.6.1" "opt_einsum==3.4.0" \
	  "torchmetrics==1.9.0" "lightning-utilities==0.15.3"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trustml evaluate protocols/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@for b in $$(ls benchmarks/*.py | xargs -n1 basename | sed 's/\.py$$//' | grep -v '^_'); do \
	  echo "== benchmarks.$$b"; $(BIN)/python -m benchmarks.$$b || exit 1; done

# The five science cases in paper_examples/, one after another (about 4.5 min on an idle 2-core CPU).
# Exit status 1 (a criterion failed; the report is still written) is tolerated, 2 is not.
EXAMPLES ?= climate_extreme_weather cosmology_parameters hep_jet_images enso_forecasting cosmology_search
examples: $(STAMP)
	@for c in $(EXAMPLES); do \
	  echo "== paper_examples/$$c"; start=$$(date +%s); \
	  $(BIN)/trustml evaluate paper_examples/$$c/protocol.yaml --out reports/paper_examples/$$c --quiet; \
	  rc=$$?; echo "   exit $$rc, $$(( $$(date +%s) - start )) s"; \
	  if [ $$rc -ne 0 ] && [ $$rc -ne 1 ]; then exit $$rc; fi; \
	done

# The labeling-campaign variant of the climate case (a simulated campaign: many small fits).
campaign: $(STAMP)
	$(BIN)/trustml evaluate paper_examples/climate_labeling_campaign/protocol.yaml \
	  --out reports/paper_examples/climate_labeling_campaign --quiet; \
	rc=$$?; if [ $$rc -ne 0 ] && [ $$rc -ne 1 ]; then exit $$rc; fi

# ruff on everything, mypy (types) on the package; CI runs this after `make test`.
lint: $(STAMP)
	$(BIN)/ruff check trustml tests benchmarks
	$(BIN)/mypy trustml

clean:
	rm -rf $(VENV) reports .pytest_cache
