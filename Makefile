# Two commands on a fresh machine: `make demo` (the main job on an embedded default) and `make test`.
# Both create .venv from the pinned requirements on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements

# `make app` serves the newest `make demo` snapshot of the L1 network, the one that wins the center hole (or,
# without one, the traditional methods); APP_ARGS adds options, e.g. `make app APP_ARGS="--port 9000"`.
# `make browser` installs Debian's chromium for the browser test.
DEMO_SNAPSHOTS := results/demo/training-runs/gan-l1/*/network-snapshot-*.pt
CHROMIUM := /usr/bin/chromium
APP_ARGS ?=

.PHONY: demo test lint bench clean-venv app browser

$(STAMP): requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# opencv-contrib-python-headless replaced opencv-python-headless; both install cv2, so drop the old one first.
	$(PY) -m pip uninstall --quiet --disable-pip-version-check -y opencv-python-headless
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	cp requirements.txt $(STAMP)

demo: $(STAMP)
	$(PY) demo.py

test: $(STAMP) browser
	$(PY) -m pytest -q tests

app: $(STAMP)
	@snap=$$(ls $(DEMO_SNAPSHOTS) 2>/dev/null | sort | tail -n 1); \
	if [ -z "$$snap" ]; then echo "no snapshot under results/demo (run make demo first); traditional methods only"; fi; \
	exec $(PY) app.py $${snap:+--network "$$snap"} $(APP_ARGS)

# Installs chromium when it is missing and this user can (root, or sudo without a password); never fails, so
# that `make test` still runs and the browser test says why it skipped.
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
		if [ "$$SUDO" != none ] && command -v apt-get >/dev/null; then \
			$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium \
				|| echo "make browser: could not install chromium; the browser test will skip"; \
		else \
			echo "make browser: $(CHROMIUM) is missing and apt-get cannot run here; the browser test will skip"; \
		fi; \
	fi

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/ops.py

clean-venv:
	rm -rf $(VENV)
