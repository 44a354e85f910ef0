# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv (Python 3.10), installs selfsup pinned by requirements/lock.txt,
#               and runs the pipeline end to end on the built-in digits dataset
#   make test   the same set-up, then the whole test suite (what CI runs)
# Override the interpreter with `make demo PYTHON=/path/to/python3.10`.

VENV ?= .venv
OUTPUT ?= runs/demo
# The tests run in one worker per core (pytest-xdist), a test file per worker at a time, so that a file's
# module fixtures (an end-to-end run) are built once; tests/conftest.py starts the end-to-end files first.
PYTEST_ARGS ?=
PYTEST_WORKERS ?= auto
STAMP := $(VENV)/.installed

# Python 3.10 is required: TFX 1.16 (the newest TFX whose wheels load on these machines)
# supports Python >=3.9,<3.11. Look on PATH, then in pyenv's versions.
PYTHON ?= $(shell for candidate in python3.10 \
	$$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python 2>/dev/null) \
	$$(ls -d $$HOME/.pyenv/versions/3.10*/bin/python 2>/dev/null); do \
	"$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1 \
	&& echo "$$candidate" && break; done)

.PHONY: demo test lint lock install

install: $(STAMP)

$(STAMP): setup.py requirements/lock.txt
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: Python 3.10 not found (TFX 1.16 needs Python >=3.9,<3.11)."; \
		echo "Install it (e.g. 'pyenv install 3.10') or pass PYTHON=/path/to/python3.10."; exit 1; fi
	@echo "Setting up $(VENV) with $(PYTHON) (first time: about 4 minutes, 3 GB)..."
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@# lenient (not compat): setuptools' import hook maps `selfsup_kubeflow` to kubeflow/ (setup.py package_dir),
	@# which a .pth holding the repository root cannot; the Kubeflow SDK's `kubeflow` then imports beside it.
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e ".[dev]" --config-settings editable_mode=lenient
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/selfsup demo --output $(OUTPUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

lock: $(STAMP)
	{ echo "# Pinned versions of the whole resolved environment (Python 3.10, tfx[kfp]==1.16.0)."; \
	  echo "# Used as a pip constraints file by the Makefile. Regenerate with: make lock"; \
	  $(VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^selfsup'; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt
