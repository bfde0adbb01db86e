# Two commands on a fresh machine: `make demo` (the main job on an embedded default) and `make test`.
# Both create .venv from the pinned requirements on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements

.PHONY: demo test lint bench clean-venv

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# opencv-contrib-python-headless replaced opencv-python-headless; both install cv2, so drop the old one first.
	$(PY) -m pip uninstall --quiet --disable-pip-version-check -y opencv-python-headless
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	cp requirements.txt $(STAMP)

demo: $(STAMP)
	$(PY) demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/ops.py

clean-venv:
	rm -rf $(VENV)
