# ecr-oci: every target works on a fresh Debian 12 machine as root (apt + pip).
# Elsewhere: install docker-registry (CNCF Distribution 2.8), skopeo, umoci, podman,
# runc and prometheus yourself, then `make install test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
APT_PACKAGES = docker-registry skopeo umoci podman runc catatonit busybox-static prometheus docker.io postgresql apache2-utils openssl ca-certificates curl chromium chromium-driver radosgw ceph-mon ceph-osd nginx-light rclone sqlite3
PYTEST_ARGS ?=

.PHONY: all deps apt install test lint example demo bench conformance screenshots clean

all: test

apt:
	@if [ "$$(id -u)" != 0 ]; then echo "make apt needs root (apt-get): install $(APT_PACKAGES) yourself"; exit 1; fi
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

install:
	$(PIP) install -q -e '.[test]'

deps: apt install

lint: install
	ruff check ecr_oci tests examples
	mypy

# The README's test command: installs what it needs, then runs the whole suite.
test: deps
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# Build the example plugin's two platform images (Debian packages + umoci, no Docker engine).
example: deps
	$(PYTHON) examples/bird-detector/build_images.py

# The main job for now: a local registry, then push/inspect/pull of the example bundle.
demo: example
	bash examples/demo.sh

bench: deps
	$(PYTHON) bench/run.py
	$(PYTHON) bench/startup.py
	$(PYTHON) bench/gateway.py
	$(PYTHON) bench/web.py
	$(PYTHON) bench/scaleout.py
	$(PYTHON) bench/feed.py
	$(PYTHON) bench/fleet.py

# The README's screenshots of the web pages, taken by headless Chromium during the browser tests.
screenshots: deps
	ECR_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PYTHON) -m pytest tests/web/test_browser.py -k screenshots -q

# The OCI distribution-spec conformance suite against Distribution and against the gateway.
# Needs the Go module proxy (not reachable on the development machines: see conformance/README.md);
# `python3 conformance/probe.py` runs the offline spot checks instead.
conformance: deps
	$(PYTHON) conformance/run.py

clean:
	rm -rf examples/bird-detector/build .pytest_cache .mypy_cache .ruff_cache
