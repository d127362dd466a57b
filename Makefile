# Two commands for a newcomer: `make run` and `make test`. Both are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run test coverage install install-test system-deps migrate lint bench clean translations messages

# uv installs the same packages as pip from the same index, several times faster (and caches them):
# a clean clone's `make test` spends ~15 s here instead of ~60 s. pip remains the fallback.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'uv>=0.5,<1' || echo "uv not installed; pip will install the packages"

PIP_INSTALL = if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install --quiet --python $(BIN)/python $(1); \
  else $(BIN)/pip install --quiet $(1); fi

$(VENV)/.installed: $(BIN)/python pyproject.toml node_modules/.installed
	$(call PIP_INSTALL,-e .)
	touch $@

# Front-end packages (hls.js, socket.io-client, axe-core) from npm, pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(call PIP_INSTALL,-e '.[test]')
	touch $@

# Interface languages: each web/translations/<lang>/LC_MESSAGES/messages.po is the source (committed);
# the .mo the server loads is built here. After changing strings: `make messages`, translate, `make`.
MO_FILES := $(patsubst %.po,%.mo,$(wildcard web/translations/*/LC_MESSAGES/messages.po))
%.mo: %.po $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -i $< -o $@

translations: $(MO_FILES)

messages: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --project live-server \
	  -o web/translations/messages.pot web
	$(BIN)/pybabel update --no-fuzzy-matching -i web/translations/messages.pot -d web/translations

install: $(VENV)/.installed translations

install-test: $(VENV)/.installed-test translations system-deps

# Debian packages the test suite drives as real peers (apt only when something is missing).
# GStreamer: an RTMP encoder with its own defaults (x264enc, voaacenc, flvmux, rtmp2sink) and a
# WHIP publisher (webrtcbin through python3-gi); nodejs runs npm socket.io-client in tests/chat/test_transports.py.
SYSTEM_PACKAGES := espeak-ng chromium fonts-dejavu-core nginx-light nodejs \
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-nice \
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: could not install$$missing; tests needing them will say so"; \
	fi

migrate: install
	$(BIN)/live-server db upgrade

run: migrate
	LIVE_HOST=$(HOST) LIVE_PORT=$(PORT) $(BIN)/live-server demo
	$(BIN)/live-server run --host $(HOST) --port $(PORT)

# Tests run on PYTEST_WORKERS pytest-xdist workers (0: one process); tests marked with the same
# xdist_group run one after another on one worker. Extra arguments: PYTEST_ARGS="tests/chat -x".
PYTEST_WORKERS ?= 4
test: install-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Line coverage of our packages over the whole suite (in the test processes; server processes the tests
# start are not measured), as `make test` runs it.
coverage: install-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --cov=live_server --cov=formats --cov=ingest \
	  --cov=chat --cov=captions --cov=recorder --cov=vod --cov=web --cov=audience --cov=lti --cov=bbb \
	  --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: install-test
	$(BIN)/mypy live_server formats ingest chat captions recorder vod web audience lti bbb

bench: install-test
	@echo "see bench/README.md"

clean:
	rm -rf $(VENV) var .pytest_cache node_modules
