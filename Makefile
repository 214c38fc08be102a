# Two commands do everything on a fresh machine: `make convert`, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bridge-installed
MODEL ?= bridge.models.seqnet:seqnet
# out/<name>: the factory/class name, or the .onnx file's stem, lower-cased (out/seqnet by default)
MODEL_NAME = $(shell n='$(MODEL)'; n=$${n##*:}; n=$${n##*/}; n=$${n%.onnx}; echo "$$n" | tr A-Z a-z)
OUT ?= out/$(MODEL_NAME)
INPUT ?=
DEVICE ?= cpu
ARGS ?=
PYTEST_ARGS ?=
# make test runs the test files on this many workers (pytest-xdist; a file's tests stay together,
# so its module fixtures are built once). TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= 2

.PHONY: convert validate test zoo bench fuzz conformance clean install install-gpu lock

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || { command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 2; }; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,zoo]'
	@touch $(STAMP)

install: $(STAMP)

convert: $(STAMP)
	$(BIN)/bridge convert $(MODEL) --out $(OUT) $(foreach i,$(INPUT),--input $(i)) $(ARGS)

validate: $(STAMP)
	$(BIN)/bridge validate $(OUT) --device $(DEVICE) $(ARGS)

# tests/test_report_html.py opens report.html in headless Chromium (Debian's package); under
# `make test` a missing browser fails that test instead of skipping it (BRIDGE_REQUIRE_CHROMIUM).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	command -v apt-get >/dev/null || { echo "error: $(CHROMIUM) missing and no apt-get: install Chromium, or set CHROMIUM=/path/to/chromium" >&2; exit 2; }; \
	$$sudo apt-get install -y --no-install-recommends chromium || { $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium; }
	@test -x $(CHROMIUM) || { echo "error: chromium installed but $(CHROMIUM) is not there (set CHROMIUM=...)" >&2; exit 2; }

test: $(STAMP) $(CHROMIUM)
	BRIDGE_REQUIRE_CHROMIUM=1 BRIDGE_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# Convert and validate every model of the example zoo (examples/); writes zoo/README.md.
zoo: $(STAMP)
	BRIDGE_ZOO_VIA_MAKE=1 $(BIN)/python scripts/zoo.py $(ARGS)

# Speed and memory: inference ratios against ONNX Runtime, pipeline cost, scaling; writes bench/.
bench: $(STAMP)
	BRIDGE_BENCH_VIA_MAKE=1 $(BIN)/python scripts/bench.py $(ARGS)

# Property tests of every patch on random graphs (tests/test_fuzz_patches.py) with 10x make test's examples.
fuzz: $(STAMP)
	BRIDGE_FUZZ_SCALE=$${BRIDGE_FUZZ_SCALE:-10} $(BIN)/python -m pytest -q -m fuzz tests/test_fuzz_patches.py $(PYTEST_ARGS)

# ONNX's own backend test cases through bridge; resumable; writes conformance/README.md.
conformance: $(STAMP)
	$(BIN)/python scripts/conformance.py --jobs 2 $(ARGS)

# Swap in the GPU builds of ONNX Runtime and Paddle (versions and index in constraints-gpu.txt).
PADDLE_GPU_INDEX ?= https://www.paddlepaddle.org.cn/packages/stable/cu126/
install-gpu: $(STAMP)
	$(BIN)/python -m pip uninstall -y onnxruntime paddlepaddle
	$(BIN)/python -m pip install -c constraints.txt -c constraints-gpu.txt onnxruntime-gpu paddlepaddle-gpu \
		--extra-index-url $(PADDLE_GPU_INDEX)

lock: $(STAMP)
	{ echo '# Exact versions `make` installs (pip -c constraints.txt). Regenerate: `make lock` (pip freeze of .venv).'; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/'; } > constraints.txt

clean:
	rm -rf $(OUT) out .pytest_cache
