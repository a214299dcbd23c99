# Every target builds .venv itself, so a fresh clone needs nothing but python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

AIO_VENV  := .venv-aio
AIO_STAMP := $(AIO_VENV)/.installed

.PHONY: demo test test-aio lint bench soak format dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/evobs demo $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-aio

# aiobotocore pins an older botocore, so its tests run in their own environment.
$(AIO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(AIO_VENV)
	$(AIO_VENV)/bin/pip install --quiet --upgrade pip
	$(AIO_VENV)/bin/pip install --quiet -e '.[aio]' 'moto[server]>=5.0' 'pytest>=8' 'pytest-timeout>=2.3' 'opentelemetry-sdk'
	touch $(AIO_STAMP)

test-aio: $(AIO_STAMP)
	@if [ -d tests/aio ] && ls tests/aio/test_*.py >/dev/null 2>&1; then \
		$(AIO_VENV)/bin/pytest -q -p no:cacheprovider --rootdir=. -c pyproject.toml tests/aio; \
	else echo "test-aio: no aiobotocore tests yet"; fi

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m tests.benchmarks $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy evobs

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The wheel and sdist in dist/ (the package is not on a public index: install from these, or
# from a checkout; see docs/quickstart.md).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

soak: $(STAMP)
	EVOBS_SOAK_FULL=1 $(BIN)/pytest -q -m slow tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist evobs.egg-info
