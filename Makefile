# Two commands do all the set-up on a fresh Debian/Ubuntu machine (see README):
#   make demo   installs what is missing, then starts the service with the embedded defaults (SQLite, local photo
#               store, in-process reading workers), uploads the bundled samples through the real upload path and
#               prints where to open the review page (Ctrl-C stops it)
#   make test   installs what is missing (incl. test tools), then runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := tesseract-ocr
TEST_SYSTEM_PACKAGES := chromium chromium-driver

.PHONY: demo read-samples test install install-dev system-deps test-system-deps

system-deps:
	@bash scripts/ensure-system-packages $(SYSTEM_PACKAGES)

test-system-deps:
	@bash scripts/ensure-system-packages $(SYSTEM_PACKAGES) $(TEST_SYSTEM_PACKAGES)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: system-deps $(BIN)/python
	$(BIN)/pip install -q -e .

install-dev: test-system-deps $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,train]'

demo: install
	$(BIN)/c1ocr serve --load-samples samples

# Exit code 1 means "some photo is unreadable": the samples include a blurry and a cut-off photo on purpose.
read-samples: install
	$(BIN)/c1ocr read samples/*.jpg || [ $$? -eq 1 ]

test: install-dev
	$(BIN)/python -m pytest -q -n 2
